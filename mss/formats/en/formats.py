# The same names as the Swedish module, in English's own capitalisation.
DAY_MONTH_FORMAT = "j M"  # 2 Dec
DAY_MONTH_TIME_FORMAT = "j M H:i"  # 2 Dec 09:00
WEEKDAY_DATE_FORMAT = "D j M"  # Wed 2 Dec
WEEKDAY_DATETIME_FORMAT = "D j M H:i"  # Wed 2 Dec 09:00
