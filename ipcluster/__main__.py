"""``python -m ipcluster ...`` is the ``ipcluster`` command."""

from ipcluster.cli.main import main

if __name__ == "__main__":
    main()
