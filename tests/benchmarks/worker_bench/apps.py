from django.apps import AppConfig


class WorkerBenchConfig(AppConfig):
    name = "worker_bench"
    label = "caravela_worker_bench"
