"""The web UI over plain HTTP (no browser): the same flows as the browser tests, and the
security properties that are easier to pin here (cookies, CSRF, 401/403, redirects)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import memkern.ui
from memkern.errors import NotFoundError
from memkern.models import LifecycleState
from memkern.ui.sessions import COOKIE

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def signed_in(world, who: str) -> tuple[TestClient, str]:
    """A client signed in as ``who`` and its session's CSRF token."""
    client = TestClient(world.app)
    response = client.post("/ui/signin", data={"key": world.keys[who]}, follow_redirects=False)
    assert response.status_code == 303
    page = client.get("/ui/cubes")
    return client, CSRF.search(page.text).group(1)


def cube_url(world, rest: str = "") -> str:
    return f"/ui/cubes/{world.cube_id}{rest}"


def current(world, memory_id: str):
    return world.mos.as_user(world.keys["admin"]).get_cube("demo").history(memory_id)[-1]


# -- signing in --------------------------------------------------------------------------------------------
def test_pages_need_a_session_and_a_bad_key_gets_none(world):
    client = TestClient(world.app)
    response = client.get(cube_url(world, "/timeline"), follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"].startswith("/ui/signin?next=")
    assert client.post(cube_url(world, f"/memories/{world.turn.id}/archive"), data={"csrf": "x"}).status_code == 401
    refused = client.post("/ui/signin", data={"key": "mk_" + "0" * 12 + "_nope"}, follow_redirects=False)
    assert refused.status_code == 401 and COOKIE not in refused.cookies


def test_the_key_lives_only_on_the_server_behind_an_httponly_strict_cookie(world):
    client = TestClient(world.app)
    key = world.keys["owner"]
    response = client.post("/ui/signin", data={"key": key, "next": cube_url(world)}, follow_redirects=False)
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/ui" in cookie
    assert key not in cookie and key not in response.headers["location"]
    assert response.headers["location"] == cube_url(world)
    page = client.get(cube_url(world))
    assert page.status_code == 200 and key not in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]


def test_an_outside_next_is_ignored(world):
    client = TestClient(world.app)
    response = client.post("/ui/signin", data={"key": world.keys["owner"], "next": "//evil.example/ui/x"},
                           follow_redirects=False)
    assert response.headers["location"] == "/ui/cubes"


def test_signing_out_and_revoking_the_key_end_the_session(world):
    client, csrf = signed_in(world, "owner")
    assert client.post("/ui/signout", data={"csrf": csrf}, follow_redirects=False).status_code == 303
    assert client.get("/ui/cubes", follow_redirects=False).status_code == 303
    client, _ = signed_in(world, "reader")
    world.mos.as_user(world.keys["admin"]).revoke_api_key(world.keys["reader"])
    assert client.get("/ui/cubes", follow_redirects=False).headers["location"].startswith("/ui/signin")


# -- browsing ----------------------------------------------------------------------------------------------
def test_cubes_list_counts_by_kind_state_and_session(world):
    client, _ = signed_in(world, "owner")
    page = client.get("/ui/cubes").text
    assert "demo" in page and "<strong>5</strong> memories" in page
    assert re.search(r"quarantined</th><td>1<", page)
    reader, _ = signed_in(world, "reader")  # the reader may not see quarantined memories, nor count them
    page = reader.get("/ui/cubes").text
    assert "<strong>4</strong> memories" in page and "quarantined" not in page


def test_cube_page_shows_policy_retention_and_derived_memory_status(world):
    world.mos.as_user(world.keys["owner"]).set_policy("demo", archive_after_days=30)
    client, _ = signed_in(world, "owner")
    page = client.get(cube_url(world)).text
    assert "30 days" in page and "Poisoning guard" in page
    assert "Activation (KV cache)" in page and "Parametric (LoRA adapter)" in page


def test_profile_page_shows_values_now_and_before_with_links_to_the_turns_that_said_them(world):
    cube = world.mos.as_user(world.keys["owner"]).get_cube("demo")
    said = cube.add([{"role": "user", "name": "Caroline", "content": "I live in Paris.", "time": "2024-05-04T09:00Z"},
                     {"role": "user", "name": "Caroline", "content": "I moved to Lyon.", "time": "2024-05-06T09:00Z"}],
                    session_id="s3").added
    client, _ = signed_in(world, "reader")
    assert "/profile" in client.get(cube_url(world)).text       # linked from every cube page
    page = client.get(cube_url(world, "/profile")).text
    section = page.split('id="h-profile"', 1)[1].split("</section>", 1)[0]
    assert "Paris" in section and "no longer true: then Lyon" in section and "Lyon" in section
    assert all(f"/memories/{item.id}/context" in section for item in said)


def test_timeline_puts_a_fact_beside_its_source_turn_and_filters(world):
    client, _ = signed_in(world, "reader")
    page = client.get(cube_url(world, "/timeline")).text
    row = next(r for r in page.split('<li class="row">') if f'id="m-{world.turn.id}"' in r)
    assert f'id="m-{world.fact.id}"' in row
    assert "Session s1" in page and "Session s2" in page
    assert world.held.id not in page  # quarantined: not for a reader
    only_s2 = client.get(cube_url(world, "/timeline?session=s2")).text
    assert "beagle" in only_s2 and "adopted" not in only_s2
    melanie = client.get(cube_url(world, "/timeline?speaker=Melanie")).text
    assert "What breed" in melanie and "adopted" not in melanie
    facts = client.get(cube_url(world, "/timeline?kind=fact")).text
    assert world.fact.id in facts and world.turn.id not in facts
    dated = client.get(cube_url(world, "/timeline?since=2024-05-02&until=2024-05-04&kind=turn")).text
    assert "beagle" in dated and "adopted" not in dated
    bad = client.get(cube_url(world, "/timeline?since=not-a-date"))
    assert bad.status_code == 422 and "since" in bad.text


def test_timeline_pages_by_offset(world):
    client, _ = signed_in(world, "owner")
    first = client.get(cube_url(world, "/timeline?limit=2")).text
    assert 'rel="next"' in first and "offset=2" in first and 'rel="prev"' not in first
    last = client.get(cube_url(world, "/timeline?limit=2&offset=2")).text
    assert 'rel="prev"' in last and 'rel="next"' not in last


def test_search_draws_the_score_parts_and_links_each_hit_to_its_source_turn(world):
    client, _ = signed_in(world, "reader")
    page = client.get(cube_url(world, "/search"), params={"q": "What breed is Biscuit?"}).text
    for part in ("lexical", "dense", "session", "neighbour", "speaker", "date", "recency"):
        assert f"part-{part}" in page
    assert "Session:" in page or "Session</dt>" in page
    context = client.get(cube_url(world, f"/memories/{world.fact.id}/context"), follow_redirects=False)
    target = context.headers["location"]
    assert "session=s1" in target and target.endswith(f"#m-{world.turn.id}")
    assert world.turn.id in client.get(target.split("#")[0]).text


# -- changing ----------------------------------------------------------------------------------------------
def test_history_edit_archive_restore_and_delete_with_confirmation(world):
    client, csrf = signed_in(world, "owner")
    url = cube_url(world, f"/memories/{world.fact.id}")
    response = client.post(url + "/edit", data={"csrf": csrf, "text": "Caroline has a beagle.", "reason": "breed",
                                                "valid_from": "2024-05-03T09:00"})
    assert response.status_code == 200 and "Caroline has a beagle." in response.text
    assert response.text.count('class="span valid') == 2 and response.text.count('class="span recorded') == 2
    assert current(world, world.fact.id).version == 2
    client.post(url + "/archive", data={"csrf": csrf})
    assert current(world, world.fact.id).state is LifecycleState.ARCHIVED
    client.post(url + "/restore", data={"csrf": csrf})
    assert current(world, world.fact.id).state is LifecycleState.ACTIVE
    confirm = client.get(url + "/delete")
    assert "Delete this memory?" in confirm.text and 'method="post"' in confirm.text
    assert client.post(url + "/delete", data={"csrf": csrf}, follow_redirects=False).status_code == 303
    with pytest.raises(NotFoundError):
        current(world, world.fact.id)


def test_quarantine_review_release_and_the_audit_entry(world):
    client, csrf = signed_in(world, "owner")
    page = client.get(cube_url(world, "/quarantine")).text
    assert world.held.id in page and "Why:" in page
    client.post(cube_url(world, f"/memories/{world.held.id}/release"), data={"csrf": csrf, "reason": "checked"})
    assert current(world, world.held.id).state is LifecycleState.ACTIVE
    audit = client.get("/ui/audit", params={"operation": "release"}).text
    assert re.search(r"<td>release</td>.*?allowed", audit, re.S)


def test_create_dump_and_load_a_cube(world, tmp_path):
    client, csrf = signed_in(world, "owner")
    created = client.post("/ui/cubes", data={"csrf": csrf, "name": "fresh", "description": "new"})
    assert created.status_code == 200 and "fresh" in created.text
    dumped = client.get(cube_url(world, "/dump"))
    assert dumped.status_code == 200 and "attachment" in dumped.headers["content-disposition"]
    loaded = client.post("/ui/cubes/load", data={"csrf": csrf, "name": "copy"},
                         files={"file": ("demo.cube", dumped.content)})
    assert loaded.status_code == 200 and "copy" in loaded.text
    assert len(world.mos.as_user(world.keys["owner"]).get_cube("copy").get_all().items) == 4


# -- what a reader may not do ------------------------------------------------------------------------------
def test_reader_sees_no_write_controls_and_forged_writes_answer_403(world):
    client, csrf = signed_in(world, "reader")
    page = client.get(cube_url(world, f"/memories/{world.turn.id}")).text
    for control in ("Save new version", ">Archive<", ">Release<", "Delete…"):
        assert control not in page
    assert client.get(cube_url(world, "/quarantine")).status_code == 403
    for action, data in (("edit", {"text": "forged"}), ("archive", {}), ("delete", {})):
        response = client.post(cube_url(world, f"/memories/{world.turn.id}/{action}"), data={"csrf": csrf, **data})
        assert response.status_code == 403, action
    assert current(world, world.turn.id).text == world.turn.text
    assert client.post(cube_url(world, f"/memories/{world.held.id}/release"), data={"csrf": csrf}).status_code == 403
    denied = world.mos.as_user(world.keys["admin"]).audit(user=world.user_ids["reader"])
    assert {"update", "archive", "delete"} <= {e.operation for e in denied if e.result.value == "denied"}


def test_a_post_without_the_session_token_or_from_another_site_changes_nothing(world):
    client, csrf = signed_in(world, "owner")
    url = cube_url(world, f"/memories/{world.turn.id}/archive")
    assert client.post(url, data={}).status_code == 403
    assert client.post(url, data={"csrf": "wrong"}).status_code == 403
    assert client.post(url, data={"csrf": csrf}, headers={"origin": "http://evil.example"}).status_code == 403
    assert current(world, world.turn.id).state is LifecycleState.ACTIVE


# -- assets ------------------------------------------------------------------------------------------------
def test_assets_are_served_from_the_package_and_nothing_is_fetched_from_elsewhere(world):
    client = TestClient(world.app)
    assert client.get("/ui/static/ui.css").headers["content-type"].startswith("text/css")
    assert client.get("/ui/static/ui.js").status_code == 200
    assert client.get("/ui/static/..%2Fsessions.py").status_code == 404
    folder = Path(memkern.ui.__file__).parent
    for path in [*folder.glob("templates/*.html"), *folder.glob("static/*")]:
        assert "http://" not in path.read_text() and "https://" not in path.read_text(), path


def test_without_authentication_the_ui_runs_as_the_embedded_default(world):
    from fastapi import FastAPI

    from memkern.ui import ui_router

    app = FastAPI()
    app.include_router(ui_router(world.mos, auth="off"))
    client = TestClient(app)
    assert "without authentication" in client.get("/ui/signin").text
    assert client.post("/ui/signin", data={}, follow_redirects=False).status_code == 303
    page = client.get(cube_url(world, f"/memories/{world.held.id}"))
    assert page.status_code == 200 and "Release" in page.text  # nothing checked: everything shown
    strict = TestClient(world.app)  # the same empty sign-in is refused where keys are required
    assert strict.post("/ui/signin", data={}, follow_redirects=False).status_code == 401


def test_grants_are_shown_to_cube_admins_only(world):
    owner, _ = signed_in(world, "owner")
    assert world.user_ids["reader"] in owner.get(cube_url(world)).text
    reader, _ = signed_in(world, "reader")
    page = reader.get(cube_url(world))
    assert page.status_code == 200 and "Who else may use it" not in page.text


def test_the_ui_acts_only_through_the_dispatcher():
    """No page reads or writes the store itself: everything goes through ``Dispatcher.call``."""
    folder = Path(memkern.ui.__file__).parent
    for path in folder.glob("*.py"):
        source = path.read_text()
        assert ".store" not in source and "memkern.store" not in source and "memkern.ops." not in source.replace(
            "memkern.ops.governance import authenticate", ""), path


def test_memkern_serve_mounts_the_ui_beside_the_api(world):
    from memkern.server.app import create_app

    client = TestClient(create_app(world.mos))
    assert client.get("/ui/", follow_redirects=False).headers["location"] == "/ui/cubes"
    assert client.post("/ui/signin", data={"key": world.keys["reader"]}, follow_redirects=False).status_code == 303
    assert "demo" in client.get("/ui/cubes").text
    assert not any(path.startswith("/ui") for path in client.get("/openapi.json").json()["paths"])


def test_a_memory_page_lists_its_linked_memories(world):
    client, _ = signed_in(world, "reader")
    page = client.get(cube_url(world, f"/memories/{world.turn.id}")).text
    section = page[page.index('id="h-links"'):page.index('id="h-log"')]
    for kind, text in (("followed by", "Lovely! What breed is Biscuit?"), ("source of", "Caroline has a dog called"),
                       ("same entity", "Biscuit is a beagle")):
        assert re.search(rf"<td>{kind}</td>\s*<td><a [^>]*>[^<]*{re.escape(text)}", section), section
    fact_page = client.get(cube_url(world, f"/memories/{world.fact.id}")).text
    assert "<td>derived from</td>" in fact_page and f"/memories/{world.turn.id}\"" in fact_page


def test_the_timeline_opens_with_the_months_of_the_tree(world):
    client, _ = signed_in(world, "reader")
    page = client.get(cube_url(world, "/timeline")).text
    months = page.split('aria-label="Months"', 1)[1].split("</nav>", 1)[0]
    assert "2024-05" in months and "in 2 sessions: Biscuit" in months
    assert "since=2024-05-01" in months and "until=2024-05-31T23%3A59%3A59" in months
    assert 'aria-label="Months"' not in client.get(cube_url(world, "/timeline?session=s2")).text
