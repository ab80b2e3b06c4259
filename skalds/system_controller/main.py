"""``python -m skalds.system_controller.main``: the controller alone, configured from the environment."""

from skalds.controller.main import main

if __name__ == "__main__":
    main()
