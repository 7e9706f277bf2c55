# Swedish writes weekdays and months in lower case: "b" is the month's lower-case abbreviation
# ("dec"); Django's "M" capitalises it ("Dec").
DAY_MONTH_FORMAT = "j b"  # 2 dec
DAY_MONTH_TIME_FORMAT = "j b H:i"  # 2 dec 09:00
WEEKDAY_DATE_FORMAT = "D j b"  # ons 2 dec
WEEKDAY_DATETIME_FORMAT = "D j b H:i"  # ons 2 dec 09:00
