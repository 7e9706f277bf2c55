#!/usr/bin/env python
import os
import sys

# Commands whose own --settings option names a data file, not Django's settings module:
# Django would read it as the settings module before the command is even found.
OWN_SETTINGS_OPTION = {"preview_absences": "--settings-file"}


def _own_settings_option(argv):
    option = OWN_SETTINGS_OPTION.get(argv[1]) if len(argv) > 1 else None
    if option is None:
        return argv
    return [
        option + arg[len("--settings") :]
        if arg == "--settings" or arg.startswith("--settings=")
        else arg
        for arg in argv
    ]


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mss.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(_own_settings_option(sys.argv))
