"""The "åter …" part of an absence as One X shows it: "Möte, åter 14:00".

A return at midnight ends an all-day absence (or a chain ending with one): the person is back
that day, so the text names the day ("åter mån 15 dec"), never "00:00" of it.
"""

from datetime import datetime, time

from django.utils import timezone
from django.utils.formats import date_format, time_format
from django.utils.translation import gettext as _


def back_text(return_at: datetime, start: datetime) -> str:
    """ "back 14:00" the same day, "back Mon 15 Dec" after an all-day absence, otherwise
    "back Wed 2 Dec 09:00"; in the active language and the current time zone."""
    back = timezone.localtime(return_at)
    if back.time() == time(0):
        when = date_format(back, "WEEKDAY_DATE_FORMAT")
    elif back.date() == timezone.localtime(start).date():
        when = time_format(back, "H:i")
    else:
        when = date_format(back, "WEEKDAY_DATETIME_FORMAT")
    return _("back %(time)s") % {"time": when}
