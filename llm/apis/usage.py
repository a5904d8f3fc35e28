from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import HasTokenScope


class UsageApi(APIView):
    """Placeholder being replaced by the usage summary (in progress)."""

    permission_classes = [HasTokenScope]
    required_scope = "llm"

    def get(self, request):
        return Response({"detail": "not implemented yet"}, status=501)
