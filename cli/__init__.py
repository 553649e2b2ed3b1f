"""The ``esteira`` command, in TFX's shape: ``main.py`` names the commands, one module a command group
parses its arguments and calls the library of the room that does the work (pipeline, serving, tracking,
observability, console, deploy, orchestration, privacy). No room imports this package."""
