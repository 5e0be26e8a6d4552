from django.urls import path

from portal.accounts import views

app_name = "accounts"
urlpatterns = [
    path("login/", views.SignInView.as_view(), name="login"),
    path("reauthenticate/", views.ReauthenticateView.as_view(), name="reauthenticate"),
    path("entra/start/", views.EntraStartView.as_view(), name="entra-start"),
    path("entra/callback/", views.EntraCallbackView.as_view(), name="entra-callback"),
    path("logout/", views.SignOutView.as_view(), name="logout"),
]
