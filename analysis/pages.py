"""Placeholder: the analyst's report pages (server-rendered, login required) land here."""
from django.shortcuts import redirect
from django.urls import path

urlpatterns = [path("", lambda request: redirect("/admin/"), name="home")]
