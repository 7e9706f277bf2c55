"""A Celery task's id on every log line it writes (calendarsync.logcontext), in workers and
for tasks run eagerly inside a request alike. Connected from MssConfig.ready."""

from celery import signals

from calendarsync import logcontext

# Tokens of the tasks running in this process, by task id (an eager task may run inside
# another; pre- and postrun come in the thread that runs the task).
_tokens = {}


@signals.task_prerun.connect(dispatch_uid="mss_task_log_id")
def _task_started(task_id=None, **kwargs):
    _tokens[task_id] = logcontext.task_id.set(task_id)


@signals.task_postrun.connect(dispatch_uid="mss_task_log_id")
def _task_ended(task_id=None, **kwargs):
    token = _tokens.pop(task_id, None)
    if token is not None:
        logcontext.task_id.reset(token)
