"""The Excel add-in as djllm serves it under /excel/: the manifest generated from PUBLIC_URL, the add-in's files with
their content types, framing allowed (Excel shows the task pane in an iframe), and none of it in the OpenAPI schema.

Microsoft's manifest validator (`office-addin-manifest validate`, npm) posts the file to an online Microsoft service
and ships no schema, so it cannot run offline. These tests check instead that the manifest is well-formed XML with
the elements, order and references an Excel custom-functions add-in with a shared runtime needs.
"""

import json
import re
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from django.test import Client

BASE_DIR = Path(__file__).resolve().parent.parent
ADDIN_DIR = BASE_DIR / "clients" / "excel" / "addin"
NS = {
    "o": "http://schemas.microsoft.com/office/appforoffice/1.1",
    "ov": "http://schemas.microsoft.com/office/taskpaneappversionoverrides",
    "bt": "http://schemas.microsoft.com/office/officeappbasictypes/1.0",
    "xsi": "http://www.w3.org/2001/XMLSchema-instance",
}
XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"
# The order the TaskPaneApp schema (MS-OWEMXML) requires for the OfficeApp children this manifest uses.
OFFICEAPP_ORDER = [
    "Id",
    "Version",
    "ProviderName",
    "DefaultLocale",
    "DisplayName",
    "Description",
    "IconUrl",
    "HighResolutionIconUrl",
    "SupportUrl",
    "AppDomains",
    "Hosts",
    "Requirements",
    "DefaultSettings",
    "Permissions",
    "VersionOverrides",
]

pytestmark = pytest.mark.django_db

PUBLIC = "https://djllm.example.org"


@pytest.fixture
def public_url(settings):
    settings.PUBLIC_URL = PUBLIC
    return PUBLIC


def local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def fetch_manifest(client) -> tuple[object, ET.Element]:
    response = client.get("/excel/manifest.xml")
    assert response.status_code == 200
    return response, ET.fromstring(response.content)


def test_manifest_is_well_formed_and_in_schema_order(client, public_url):
    response, root = fetch_manifest(client)
    assert response["Content-Type"].startswith("application/xml")
    assert root.tag == f"{{{NS['o']}}}OfficeApp"
    assert root.get(XSI_TYPE) == "TaskPaneApp"
    children = [local(child.tag) for child in root]
    assert children == OFFICEAPP_ORDER
    assert uuid.UUID(root.findtext("o:Id", namespaces=NS))
    assert re.fullmatch(r"\d+\.\d+\.\d+\.\d+", root.findtext("o:Version", namespaces=NS))
    assert root.find("o:Hosts/o:Host", NS).get("Name") == "Workbook"
    assert root.findtext("o:Permissions", namespaces=NS) == "ReadWriteDocument"
    sets = {s.get("Name"): s.get("MinVersion") for s in root.findall("o:Requirements/o:Sets/o:Set", NS)}
    assert sets == {"CustomFunctionsRuntime": "1.1", "SharedRuntime": "1.1"}


def test_manifest_declares_shared_runtime_custom_functions_and_a_taskpane_button(client, public_url):
    _, root = fetch_manifest(client)
    host = root.find("ov:VersionOverrides/ov:Hosts/ov:Host", NS)
    assert host.get(XSI_TYPE) == "Workbook"
    # <Runtimes> comes first in the host, as the shared-runtime docs require.
    assert [local(c.tag) for c in host] == ["Runtimes", "AllFormFactors", "DesktopFormFactor"]
    [runtime] = host.findall("ov:Runtimes/ov:Runtime", NS)
    assert (runtime.get("resid"), runtime.get("lifetime")) == ("Taskpane.Url", "long")

    [functions] = host.findall("ov:AllFormFactors/ov:ExtensionPoint", NS)
    assert functions.get(XSI_TYPE) == "CustomFunctions"
    assert functions.find("ov:Script/ov:SourceLocation", NS).get("resid") == "Functions.Script.Url"
    # The functions run in the task pane's page: that is what makes the runtime shared.
    assert functions.find("ov:Page/ov:SourceLocation", NS).get("resid") == "Taskpane.Url"
    assert functions.find("ov:Metadata/ov:SourceLocation", NS).get("resid") == "Functions.Metadata.Url"
    assert functions.find("ov:Namespace", NS).get("resid") == "Functions.Namespace"

    desktop = host.find("ov:DesktopFormFactor", NS)
    assert [local(c.tag) for c in desktop] == ["GetStarted", "FunctionFile", "ExtensionPoint"]
    assert desktop.find("ov:FunctionFile", NS).get("resid") == "Taskpane.Url"
    action = desktop.find(".//ov:Control/ov:Action", NS)
    assert action.get(XSI_TYPE) == "ShowTaskpane"
    assert action.find("ov:SourceLocation", NS).get("resid") == "Taskpane.Url"


def test_every_resid_resolves_and_every_url_is_under_public_url(client, public_url):
    _, root = fetch_manifest(client)
    resources = root.find("ov:VersionOverrides/ov:Resources", NS)
    defined = {el.get("id"): el.get("DefaultValue") for el in resources.iter() if el.get("id")}
    used = {el.get("resid") for el in root.iter() if el.get("resid")}
    assert used and used <= set(defined), used - set(defined)
    assert defined["Functions.Namespace"] == "DJLLM"
    urls = [v for v in defined.values() if v.startswith("http")]
    urls += [el.get("DefaultValue") for el in root if local(el.tag) in ("IconUrl", "HighResolutionIconUrl")]
    urls.append(root.find("o:DefaultSettings/o:SourceLocation", NS).get("DefaultValue"))
    assert all(u.startswith(f"{PUBLIC}/excel/") for u in urls), urls
    assert defined["Functions.Script.Url"] == f"{PUBLIC}/excel/functions.js"
    assert defined["Functions.Metadata.Url"] == f"{PUBLIC}/excel/functions.json"
    assert defined["Taskpane.Url"] == f"{PUBLIC}/excel/taskpane.html"
    assert root.findtext("o:AppDomains/o:AppDomain", namespaces=NS) == PUBLIC


def test_every_url_in_the_manifest_is_served(client, public_url):
    _, root = fetch_manifest(client)
    urls = {el.get("DefaultValue") for el in root.iter() if (el.get("DefaultValue") or "").startswith(PUBLIC)}
    assert len(urls) >= 8
    for url in urls:
        response = client.get(url.removeprefix(PUBLIC))
        assert response.status_code == 200, url


def test_manifest_id_is_stable_per_server_and_differs_between_servers(client, settings):
    settings.PUBLIC_URL = "https://a.example"
    first = fetch_manifest(client)[1].findtext("o:Id", namespaces=NS)
    assert fetch_manifest(client)[1].findtext("o:Id", namespaces=NS) == first
    settings.PUBLIC_URL = "https://b.example"
    assert fetch_manifest(client)[1].findtext("o:Id", namespaces=NS) != first


def test_manifest_download_is_an_attachment(client, public_url):
    response = client.get("/excel/manifest.xml?download=1")
    assert response["Content-Disposition"] == 'attachment; filename="djllm-excel-manifest.xml"'


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/excel/functions.js", "text/javascript; charset=utf-8"),
        ("/excel/functions.json", "application/json"),
        ("/excel/taskpane.html", "text/html; charset=utf-8"),
        ("/excel/taskpane.js", "text/javascript; charset=utf-8"),
        ("/excel/taskpane.css", "text/css; charset=utf-8"),
        ("/excel/assets/icon-80.png", "image/png"),
    ],
)
def test_addin_files_are_served_as_is_and_may_be_framed(client, path, content_type):
    response = client.get(path)
    assert response.status_code == 200
    assert response["Content-Type"] == content_type
    assert response.content == (ADDIN_DIR / path.removeprefix("/excel/")).read_bytes()
    assert "X-Frame-Options" not in response  # Excel on the web shows the task pane in an iframe
    assert response["Access-Control-Allow-Origin"] == "*"


@pytest.mark.parametrize(
    "path", ["/excel/../manage.py", "/excel/settings.py", "/excel/assets/../functions.js", "/excel/x.txt"]
)
def test_nothing_else_is_served(client, path):
    assert client.get(path).status_code == 404


def test_addin_files_answer_get_only(client):
    assert client.post("/excel/functions.js").status_code == 405


def test_functions_metadata_matches_the_registered_functions():
    metadata = json.loads((ADDIN_DIR / "functions.json").read_text())
    by_id = {f["id"]: f for f in metadata["functions"]}
    assert set(by_id) == {"PROMPT", "TEMPLATE", "ASK", "EACH", "CLASSIFY", "EXTRACT"}
    source = (ADDIN_DIR / "functions.js").read_text()
    for function_id in by_id:
        assert f'CustomFunctions.associate("{function_id}", ' in source
    prompt = [(p["name"], p.get("optional", False)) for p in by_id["PROMPT"]["parameters"]]
    assert prompt == [("text", False), ("type", True), ("model", True)]
    template = by_id["TEMPLATE"]["parameters"]
    assert template[1]["repeating"] is True
    # The range functions take ranges (matrices) and spill: their result is a matrix.
    for function_id in ("ASK", "EACH", "CLASSIFY", "EXTRACT"):
        assert by_id[function_id]["result"]["dimensionality"] == "matrix", function_id
    ask = [(p["name"], p["dimensionality"], p.get("optional", False)) for p in by_id["ASK"]["parameters"]]
    assert ask == [("prompt", "scalar", False), ("context", "matrix", True), ("shape", "scalar", True)]
    assert [p["dimensionality"] for p in by_id["CLASSIFY"]["parameters"]] == ["matrix", "matrix"]
    assert [p["dimensionality"] for p in by_id["EXTRACT"]["parameters"]] == ["matrix", "matrix"]
    assert [p["dimensionality"] for p in by_id["EACH"]["parameters"]] == ["matrix", "scalar"]


def test_index_page_links_the_manifest_and_warns_about_http(client, settings):
    settings.PUBLIC_URL = "http://127.0.0.1:8000"
    page = client.get("/excel/").content.decode()
    assert "/excel/manifest.xml?download=1" in page
    assert "Excel loads add-ins only over HTTPS" in page
    settings.PUBLIC_URL = PUBLIC
    assert "Excel loads add-ins only over HTTPS" not in client.get("/excel/").content.decode()


def test_excel_paths_are_not_in_the_openapi_schema():
    schema = Client().get("/api/schema/?format=json")
    assert schema.status_code == 200
    paths = json.loads(schema.content)["paths"]
    assert paths  # the schema itself is there
    assert not [p for p in paths if p.startswith("/excel")]


def test_settings_json_tells_the_functions_the_server_s_limits(client, settings):
    settings.BATCH_MAX_ITEMS = 50
    settings.EXCEL_JOB_THRESHOLD = 400
    response = client.get("/excel/settings.json")
    assert response.status_code == 200 and response["Access-Control-Allow-Origin"] == "*"
    assert response.json() == {"batch_max_items": 50, "job_threshold": 400}
    assert client.post("/excel/settings.json").status_code == 405
