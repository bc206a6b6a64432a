"""The command line: app.py wires the commands (cli/commands/), options.py and output.py are shared by them."""
