from django.contrib import admin

from .models import Book


@admin.register(Book)
class BookAdmin(admin.ModelAdmin):
    list_display = ["title", "author", "isbn", "year", "updated_at", "synced_at", "sync_version"]
    list_filter = ["year"]
    search_fields = ["title", "author", "isbn"]
    readonly_fields = ["updated_at", "synced_at", "sync_version"]
