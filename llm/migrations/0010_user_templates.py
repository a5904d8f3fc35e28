"""User prompt templates with versions; usage records keep the version they used."""

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('llm', '0009_stored_response'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='PromptTemplateVersion',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('number', models.PositiveIntegerField()),
                ('name', models.CharField(max_length=100)),
                ('description', models.TextField(blank=True)),
                ('system', models.TextField(blank=True)),
                ('user_template', models.TextField()),
                ('default_model', models.CharField(blank=True, max_length=200)),
                ('parameters', models.JSONField(blank=True, default=dict)),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
            ],
            options={
                'ordering': ['template', '-number'],
            },
        ),
        migrations.AlterModelOptions(
            name='prompttemplate',
            options={'ordering': ['type', 'source', 'name']},
        ),
        migrations.RemoveConstraint(
            model_name='prompttemplate',
            name='uniq_template_type_source',
        ),
        migrations.AddField(
            model_name='prompttemplate',
            name='created_at',
            field=models.DateTimeField(default=django.utils.timezone.now, editable=False),
        ),
        migrations.AddField(
            model_name='prompttemplate',
            name='default_model',
            field=models.CharField(blank=True, help_text='Used when a request names no model.', max_length=200),
        ),
        migrations.AddField(
            model_name='prompttemplate',
            name='description',
            field=models.TextField(blank=True),
        ),
        migrations.AddField(
            model_name='prompttemplate',
            name='name',
            field=models.CharField(default='', max_length=100),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name='prompttemplate',
            name='owner',
            field=models.ForeignKey(blank=True, help_text='Blank: shared with every user (read only to them).', null=True, on_delete=django.db.models.deletion.CASCADE, related_name='+', to=settings.AUTH_USER_MODEL),
        ),
        migrations.AddField(
            model_name='prompttemplate',
            name='parameters',
            field=models.JSONField(blank=True, default=dict, help_text='Defaults for temperature, max_tokens, top_p, stop, used when a request does not set them.'),
        ),
        migrations.AddField(
            model_name='prompttemplate',
            name='updated_at',
            field=models.DateTimeField(default=django.utils.timezone.now, editable=False),
        ),
        migrations.AlterField(
            model_name='prompttemplate',
            name='system',
            field=models.TextField(blank=True, help_text='System instruction; $language is the output language.'),
        ),
        migrations.AlterField(
            model_name='prompttemplate',
            name='type',
            field=models.CharField(blank=True, help_text='Built-ins: the webhook `type` this answers.', max_length=40),
        ),
        migrations.AlterField(
            model_name='prompttemplate',
            name='user_template',
            field=models.TextField(default='$prompt', help_text="$prompt is the user's text; $$ is a dollar sign."),
        ),
        migrations.AddField(
            model_name='prompttemplateversion',
            name='created_by',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL),
        ),
        migrations.AddField(
            model_name='prompttemplateversion',
            name='template',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='versions', to='llm.prompttemplate'),
        ),
        migrations.AddField(
            model_name='prompttemplate',
            name='current_version',
            field=models.ForeignKey(blank=True, editable=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='llm.prompttemplateversion'),
        ),
        migrations.AddField(
            model_name='usagerecord',
            name='template_version',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='llm.prompttemplateversion'),
        ),
        migrations.AddConstraint(
            model_name='prompttemplate',
            constraint=models.UniqueConstraint(condition=models.Q(('owner__isnull', True), ('type', '')), fields=('name',), name='uniq_template_shared_name', violation_error_message='There is already a shared template with this name.'),
        ),
        migrations.AddConstraint(
            model_name='prompttemplate',
            constraint=models.UniqueConstraint(condition=models.Q(('type', ''), _negated=True), fields=('type', 'source'), name='uniq_template_type_source', violation_error_message='There is already a built-in template for this type and source.'),
        ),
        migrations.AddConstraint(
            model_name='prompttemplate',
            constraint=models.UniqueConstraint(condition=models.Q(('owner__isnull', False)), fields=('owner', 'name'), name='uniq_template_owner_name', violation_error_message='You already have a template with this name.'),
        ),
        migrations.AddConstraint(
            model_name='prompttemplateversion',
            constraint=models.UniqueConstraint(fields=('template', 'number'), name='uniq_template_version'),
        ),
    ]
