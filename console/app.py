"""The console's HTTP side (Starlette): routes, the caller check, the audit trail and rendering.

Every page needs a reviewer or approver token; promote and rollback need an approver's. What a
page shows is assembled in review.py; a failing source is a message on the page, never a trace.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

import observability
from console import contests, registry, reports
from console.access import COOKIE, AuditTrail, Caller, Roles, presented_token
from console.evaluation_rows import ScoreCache
from console.review import Review, contest_page
from console.settings import ConsoleSettings
from privacy.audit import AuditLogError
from serving.labels import LabelChangeError
from tracking.errors import TrackingError

HERE = Path(__file__).parent
CHARTING = Path(observability.__path__[0]) / "static"  # the vendored uPlot, shipped once
STATIC_FILES = {"console.css": HERE / "static" / "console.css", "console.js": HERE / "static" / "console.js",
                "uPlot.iife.min.js": CHARTING / "uPlot.iife.min.js", "uPlot.min.css": CHARTING / "uPlot.min.css"}
log = logging.getLogger("console")


def _number(value: Any, digits: int = 4) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _signed(value: Any, digits: int = 4) -> str:
    return "—" if value is None else f"{value:+.{digits}f}"


def _chart_json(data: Any) -> str:
    """JSON for a <script type="application/json"> block: '</' cannot close the element."""
    return json.dumps(data).replace("</", "<\\/")


def create_app(settings: ConsoleSettings) -> Starlette:
    """The console for one model; ``settings`` names every source (see console.settings)."""
    roles = Roles(settings.reviewer_tokens, settings.approver_tokens)
    audit = AuditTrail(settings.audit_log)
    scores = ScoreCache()
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.filters.update(number=_number, signed=_signed, chart_json=_chart_json)

    def render(request: Request, name: str, caller: Caller | None, status: int = 200, **context: Any) -> Response:
        return templates.TemplateResponse(request, name, {"caller": caller, "model": settings.model_name, **context},
                                          status_code=status)

    def problem(request: Request, caller: Caller | None, message: str, status: int) -> Response:
        return render(request, "problem.html.j2", caller, status, message=message)

    def caller_of(request: Request) -> Caller | None:
        return roles.caller(presented_token(request.headers, request.cookies))

    def page(handler):  # type: ignore[no-untyped-def]
        """Require a token, then turn the sources' errors into a message on the page."""
        def endpoint(request: Request) -> Response:
            caller = caller_of(request)
            if caller is None:
                return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
            try:
                return handler(request, caller)
            except registry.UnknownVersion as error:
                return problem(request, caller, str(error), 404)
            except registry.RegistryUnavailable as error:
                return problem(request, caller, str(error), 503)
            except (TrackingError, LabelChangeError) as error:
                return problem(request, caller, str(error), 409)
            except AuditLogError as error:  # a damaged log must be noticed, not extended
                return problem(request, caller, str(error), 500)
        return endpoint

    def review() -> Review:
        return Review(settings, scores)

    def login(request: Request) -> Response:
        return render(request, "login.html.j2", None, next=_safe_next(request.query_params.get("next")))

    async def login_submit(request: Request) -> Response:
        form = await request.form()
        token = str(form.get("token", "")).strip()
        caller = roles.caller(token)
        if caller is None:
            return render(request, "login.html.j2", None, 401, next=_safe_next(str(form.get("next", ""))),
                          error="that token is neither a reviewer's nor an approver's; ask the model owner for one")
        response = RedirectResponse(_safe_next(str(form.get("next", ""))), status_code=303)
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict")
        return response

    def logout(request: Request) -> Response:
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE)
        return response

    def versions(request: Request, caller: Caller) -> Response:
        return render(request, "versions.html.j2", caller, **review().versions_page())

    def version(request: Request, caller: Caller) -> Response:
        return render(request, "version.html.j2", caller, **review().version_page(request.path_params["version"]))

    def compare(request: Request, caller: Caller) -> Response:
        context = review().compare_page(request.query_params.get("challenger"), request.query_params.get("champion"))
        return render(request, "compare.html.j2", caller, **context)

    def predict_form(request: Request, caller: Caller) -> Response:
        return render(request, "predict.html.j2", caller, **review().predict_form())

    def form_post(handler, login_next: str):  # type: ignore[no-untyped-def]
        """A form's POST: require a token, read the form, then run ``handler(request, caller, form)`` as a page."""
        async def endpoint(request: Request) -> Response:
            caller = caller_of(request)
            if caller is None:
                return RedirectResponse(f"/login?next={login_next}", status_code=303)
            form = {key: str(value) for key, value in (await request.form()).items()}
            return await run_in_threadpool(page(lambda req, who: handler(req, who, form)), request)
        return endpoint

    def _predict(request: Request, caller: Caller, values: dict[str, str]) -> Response:
        current = review()
        try:
            context = current.predict(values)
        except ValueError as error:
            return render(request, "predict.html.j2", caller, 400, **current.predict_form(), form_error=str(error))
        audit.record(caller, "console.predict", model=settings.model_name,
                     versions=[facts.version for facts, _answer in context["answers"]])
        return render(request, "predict.html.j2", caller, **context)

    async def move(request: Request) -> Response:
        caller = caller_of(request)
        if caller is None:
            return RedirectResponse("/login", status_code=303)
        action = request.path_params["action"]
        if action not in ("promote", "rollback"):
            return problem(request, caller, f"no action {action!r}; the console can promote and rollback", 404)
        form = await request.form()
        wanted = str(form.get("version", "")) if action == "promote" else None
        if not caller.may_approve:
            audit.record(caller, f"console.{action}.refused", model=settings.model_name, version=wanted,
                         reason="not an approver")
            return problem(request, caller, f"only approvers may {action}: {caller.name} holds a reviewer token. "
                                            "Ask an approver, or sign in with an approver token.", 403)
        return await run_in_threadpool(page(lambda req, who: _apply_move(req, who, action, wanted)), request)

    def _apply_move(request: Request, caller: Caller, action: str, wanted: str | None) -> Response:
        from tracking.champion import change_champion
        from tracking.registry import plan_promote, plan_rollback

        current = review()
        with audit.lock:
            if action == "promote":
                facts = registry.find_version(current.versions, wanted or "")
                planned = plan_promote(current.client, settings.model_name, facts.version)
            else:
                planned = plan_rollback(current.client, settings.model_name)
            before, after = change_champion(
                current.client, planned, settings.model_config_file, action=action,
                actor_name=f"{caller.name} ({caller.role}, console)", audit_log=settings.audit_log,
                tracking_uri=settings.tracking_uri, server=settings.grpc_server, token=settings.server_token)
        return render(request, "moved.html.j2", caller, action=action, move=planned, before=before, after=after)

    def report(request: Request, caller: Caller) -> Response:
        folder, name = request.path_params["folder"], request.path_params["name"]
        found = reports.report_file(settings.reports_folder, folder, name, settings.pipeline_reports)
        if found is None:
            return problem(request, caller, f"no report {folder}/{name}; open reports from a version's page", 404)
        path, personal = found
        audit.record(caller, "console.report.view", model=settings.model_name, report=f"{folder}/{name}",
                     personal_data=personal)
        return FileResponse(path)

    def contests_page(request: Request, caller: Caller) -> Response:
        wanted = request.query_params.get("request_id", "").strip() or None
        if wanted is not None:
            try:
                wanted = contests.check_request_id(wanted)
            except contests.ContestError as error:
                return render(request, "contests.html.j2", caller, 400, **contest_page(settings, None),
                              form_error=str(error))
            audit.record(caller, "console.decision.view", model=settings.model_name, request_id=wanted)
        return render(request, "contests.html.j2", caller, **contest_page(settings, wanted))

    def _contest_action(request: Request, caller: Caller, form: dict[str, str]) -> Response:
        action = request.path_params["action"]
        try:
            wanted = contests.check_request_id(request.path_params["request_id"])
        except contests.ContestError as error:
            return problem(request, caller, str(error), 400)
        if action == "outcome" and not caller.may_approve:
            audit.record(caller, "console.decision.outcome.refused", model=settings.model_name, request_id=wanted,
                         reason="not an approver")
            return problem(request, caller, f"only approvers record the outcome of a contest: {caller.name} holds a "
                                            "reviewer token", 403)
        context = contest_page(settings, wanted)
        try:
            with audit.lock:
                events = contests.case_events(settings.audit_log, wanted)
                if action == "contest":
                    if any(event["event"] == contests.CONTESTED for event in events):
                        raise contests.ContestError(f"a contest of {wanted} is already recorded")
                    details = contests.contest_details(wanted, form.get("channel", ""), context["explained"],
                                                       context["audit_line"])
                    event = contests.CONTESTED
                elif action == "outcome":
                    details = contests.outcome_details(wanted, form.get("outcome", ""), form.get("reason", ""),
                                                       context["explained"], context["audit_line"], events)
                    event = contests.REVIEWED
                else:
                    return problem(request, caller, f"no action {action!r}; a contest takes contest and outcome", 404)
        except contests.ContestError as error:
            return render(request, "contests.html.j2", caller, 400, **context, form_error=str(error))
        audit.record(caller, event, model=settings.model_name, **details)
        return RedirectResponse(f"/contests?request_id={wanted}", status_code=303)

    def contest_export(request: Request, caller: Caller) -> Response:
        try:
            wanted = contests.check_request_id(request.path_params["request_id"])
        except contests.ContestError as error:
            return problem(request, caller, str(error), 400)
        context = contest_page(settings, wanted)
        audit.record(caller, "console.decision.export", model=settings.model_name, request_id=wanted)
        case = contests.case_export(settings.model_name, wanted, context["explained"], context["audit_line"],
                                    context["events"])
        return Response(json.dumps(case, indent=1), media_type="application/json", headers={
            "Content-Disposition": f'attachment; filename="contest-{wanted}.json"'})

    def static(request: Request) -> Response:
        path = STATIC_FILES.get(request.path_params["name"])
        return FileResponse(path) if path else Response("not found", status_code=404)

    async def crashed(request: Request, error: Exception) -> Response:
        log.exception("console page %s failed", request.url.path)
        return HTMLResponse(f"<!doctype html><title>Console error</title><h1>Console error</h1><p>"
                            f"{type(error).__name__} while building {request.url.path}; the details are in the "
                            "console's log.</p>", status_code=500)

    routes = [
        Route("/login", login), Route("/login", login_submit, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/", page(versions)),
        Route("/versions/{version}", page(version)),
        Route("/compare", page(compare)),
        Route("/predict", page(predict_form)), Route("/predict", form_post(_predict, "/predict"), methods=["POST"]),
        Route("/actions/{action:str}", move, methods=["POST"]),
        Route("/reports/{folder}/{name}", page(report)),
        Route("/contests", page(contests_page)),
        Route("/contests/{request_id}.json", page(contest_export)),
        Route("/contests/{request_id}/{action:str}", form_post(_contest_action, "/contests"), methods=["POST"]),
        Route("/static/{name}", static),
        Route("/favicon.ico", lambda request: Response(status_code=204)),  # served reports link no icon
    ]
    return Starlette(routes=routes, exception_handlers={Exception: crashed})


def _safe_next(target: str | None) -> str:
    """Only a local path: the login form must not send a caller to another site."""
    return target if target and target.startswith("/") and not target.startswith("//") else "/"
