"""``python -m ipcluster.engine``: the ipengine command."""

from ipcluster.engine.app import main

if __name__ == "__main__":
    main()
