from django.apps import AppConfig


class FlowAppConfig(AppConfig):
    name = "tests.flowapp"
    label = "caravela_test_flowapp"
