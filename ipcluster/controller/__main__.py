"""``python -m ipcluster.controller``: run the controller process."""

from .app import main

if __name__ == "__main__":
    main()
