from django.contrib.auth import views as auth_views
from django.urls import path

from accounts import views

app_name = "account"

urlpatterns = [
    path("", views.account_page, name="page"),
    path("tokens/create", views.token_create, name="token-create"),
    path("tokens/<int:token_id>/revoke", views.token_revoke, name="token-revoke"),
    path("preferences", views.preferences_update, name="preferences"),
    path("login/", auth_views.LoginView.as_view(template_name="accounts/login.html"), name="login"),
    path("logout/", auth_views.LogoutView.as_view(next_page="account:login"), name="logout"),
]
