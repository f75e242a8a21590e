from django.urls import path

from . import views

app_name = "library"

urlpatterns = [
    path("", views.BookListView.as_view(), name="book_list"),
    path("books/new/", views.BookCreateView.as_view(), name="book_create"),
    path("books/<int:pk>/edit/", views.BookUpdateView.as_view(), name="book_edit"),
    path("books/<int:pk>/delete/", views.BookDeleteView.as_view(), name="book_delete"),
    path("books/<int:pk>/sync/", views.book_sync, name="book_sync"),
    path("books/<int:pk>/autosave/", views.book_autosave, name="book_autosave"),
    path("fake-api/", views.fake_api_conditions, name="fake_api"),
    path("import/", views.import_start, name="import_start"),
    path("import/<str:flow_id>/", views.import_progress, name="import_progress"),
    path("flows/", views.flow_list, name="flow_list"),
    path("flows/data/", views.flow_list_data, name="flow_list_data"),
    path("flows/<str:flow_id>/stop/", views.flow_stop, name="flow_stop"),
]
