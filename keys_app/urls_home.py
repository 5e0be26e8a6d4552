from django.urls import path

from keys_app import views

urlpatterns = [path("", views.KeyDefaultView.as_view(), name="keys-home")]
