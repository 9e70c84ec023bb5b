"""Subcommands of `parkwatch`, one module each, listed in `config.cli.COMMAND_MODULES`."""
