"""Date formats per language (settings.FORMAT_MODULE_PATH), on top of Django's own.

Templates name a format instead of spelling one (`{{ when|date:"WEEKDAY_DATETIME_FORMAT" }}`),
so Swedish pages write "ons 2 dec 09:00" in lower case while English ones keep "Wed 2 Dec
09:00". Every name here is defined for every language in LANGUAGES: Django prints an unknown
format name literally.
"""
