import factory
from django.contrib.auth import get_user_model

from accounts.models import UserPreferences


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.django.Password("pw-for-tests-123")  # hashed before the row is saved

    @factory.post_generation
    def preferences(obj, create, extracted, **kwargs):
        if create:
            UserPreferences.objects.get_or_create(user=obj, defaults=kwargs or {})
