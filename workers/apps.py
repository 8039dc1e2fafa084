from django.apps import AppConfig


class WorkersConfig(AppConfig):
    name = "workers"

    def ready(self) -> None:
        from django_q.signals import post_spawn

        post_spawn.connect(_warm_worker, dispatch_uid="workers.warm_worker")


def _warm_worker(sender: object, proc_name: str, **kwargs: object) -> None:
    """A qcluster worker process has started: start its slot process now (TensorFlow's
    import overlaps the wait for the first task) instead of in its first trial."""
    from workers.tasks import warm_worker

    warm_worker()
