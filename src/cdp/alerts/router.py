"""Alerts over HTTP: rules, evaluation, the alert list and lifecycle, webhook endpoints."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Response, status

from cdp.alerts import service, webhooks
from cdp.alerts.models import Alert, AlertRule, WebhookEndpoint
from cdp.alerts.schemas import (
    AlertPage,
    AlertRead,
    AlertUpdate,
    DeliveryPage,
    DeliveryRead,
    EndpointCreate,
    EndpointCreated,
    EndpointList,
    EndpointRead,
    EvaluationRead,
    Kind,
    RuleCreate,
    RuleList,
    RuleRead,
    Severity,
    Status,
)
from cdp.api import (
    PageDep,
    RuntimeDep,
    SessionDep,
    encode_cursor,
    encode_time_cursor,
    known_query_only,
    require,
    time_cursor_after,
)
from cdp.auth.principal import Principal
from cdp.errors import ValidationFailed, problem_responses

router = APIRouter(tags=["alerts"])
_ERRORS = problem_responses(401, 403, 404, 409, 422, 429)


def _alert(a: Alert) -> AlertRead:
    return AlertRead.model_validate(a, from_attributes=True)


def _rule(r: AlertRule) -> RuleRead:
    return RuleRead.model_validate(r, from_attributes=True)


def _endpoint(e: WebhookEndpoint) -> EndpointRead:
    return EndpointRead.model_validate(e, from_attributes=True)


@router.post(
    "/v1/alert-rules",
    operation_id="createAlertRule",
    summary="Configure an activity-drop or complaint-spike check",
    description="Rights requests near their due date and the cross-border threshold are"
    " checked on every evaluation without a rule (settings from policy).",
    status_code=status.HTTP_201_CREATED,
    responses=_ERRORS,
)
def create_rule(
    body: RuleCreate,
    session: SessionDep,
    rt: RuntimeDep,
    principal: Annotated[Principal, require("alerts:write")],
) -> RuleRead:
    rule = service.create_rule(
        session,
        policy=rt.policy,
        actor=principal.actor,
        kind=body.kind,
        name=body.name,
        params=body.params.model_dump(mode="json", exclude_none=True),
    )
    return _rule(rule)


@router.get(
    "/v1/alert-rules",
    operation_id="listAlertRules",
    dependencies=[known_query_only()],
    summary="The configured alert rules",
    responses=problem_responses(401, 403, 429),
)
def list_rules(
    session: SessionDep, principal: Annotated[Principal, require("alerts:read")]
) -> RuleList:
    return RuleList(items=[_rule(r) for r in service.list_rules(session)])


@router.post(
    "/v1/alerts/evaluate",
    operation_id="evaluateAlerts",
    summary="Run every check now: raise new alerts, refresh open ones, deliver webhooks",
    description="`cdp alerts run` does the same from the command line (e.g. from cron).",
    responses=problem_responses(401, 403, 429),
)
def evaluate(
    session: SessionDep,
    rt: RuntimeDep,
    principal: Annotated[Principal, require("alerts:write")],
) -> EvaluationRead:
    result = service.evaluate(session, policy=rt.policy, actor=principal.actor)
    return EvaluationRead(
        checks=result.checks,
        raised=[_alert(a) for a in result.raised],
        updated=result.updated,
        cleared=result.cleared,
        deliveries_attempted=result.deliveries.attempted,
        deliveries_delivered=result.deliveries.delivered,
    )


@router.get(
    "/v1/alerts",
    operation_id="listAlerts",
    dependencies=[known_query_only("limit", "cursor", "status", "kind", "severity")],
    summary="Alerts, most recently seen first: activity drop, complaint spike, rights due, ...",
    responses=problem_responses(401, 403, 422, 429),
)
def list_alerts(
    session: SessionDep,
    rt: RuntimeDep,
    page: PageDep,
    principal: Annotated[Principal, require("alerts:read")],
    status_: Annotated[Status | None, Query(alias="status")] = None,
    kind: Annotated[Kind | None, Query()] = None,
    severity: Annotated[Severity | None, Query()] = None,
) -> AlertPage:
    rows, last = service.list_alerts(
        session,
        where=service.AlertFilter(status=status_, kind=kind, severity=severity),
        after=time_cursor_after(page.after, str),
        limit=page.limit,
    )
    return AlertPage(items=[_alert(a) for a in rows], next_cursor=encode_time_cursor(rt, last))


@router.patch(
    "/v1/alerts/{alert_id:uuid}",
    operation_id="updateAlert",
    summary="Acknowledge or resolve an alert",
    description="open → acknowledged → resolved, or open → resolved; anything else is 409"
    " `invalid_transition`. A resolved alert is raised again when its check fires again.",
    responses=_ERRORS,
)
def update_alert(
    alert_id: UUID,
    body: AlertUpdate,
    session: SessionDep,
    principal: Annotated[Principal, require("alerts:write")],
) -> AlertRead:
    alert = service.update_alert(
        session, actor=principal.actor, alert_id=str(alert_id), status=body.status
    )
    return _alert(alert)


@router.post(
    "/v1/alert-webhooks",
    operation_id="createAlertWebhook",
    summary="Register a webhook endpoint; alerts are POSTed to it, signed with HMAC-SHA256",
    description=(
        "Headers: `X-CDP-Timestamp` (Unix seconds), `X-CDP-Signature: sha256=<hex>` over"
        " `<timestamp>.<raw body>` under the returned secret (shown once), `X-CDP-Delivery`"
        " (the same on retries). Failed deliveries are retried with exponential back-off."
    ),
    status_code=status.HTTP_201_CREATED,
    responses=_ERRORS,
)
def create_webhook(
    body: EndpointCreate,
    session: SessionDep,
    principal: Annotated[Principal, require("alerts:write")],
) -> EndpointCreated:
    endpoint, secret = webhooks.create_endpoint(
        session, actor=principal.actor, url=body.url, kinds=list(body.kinds)
    )
    return EndpointCreated(**_endpoint(endpoint).model_dump(), secret=secret)


@router.get(
    "/v1/alert-webhooks",
    operation_id="listAlertWebhooks",
    dependencies=[known_query_only()],
    summary="Webhook endpoints (without their secrets)",
    responses=problem_responses(401, 403, 429),
)
def list_webhooks(
    session: SessionDep, principal: Annotated[Principal, require("alerts:read")]
) -> EndpointList:
    return EndpointList(items=[_endpoint(e) for e in webhooks.list_endpoints(session)])


@router.delete(
    "/v1/alert-webhooks/{endpoint_id:uuid}",
    operation_id="disableAlertWebhook",
    summary="Stop sending alerts to an endpoint (its delivery log is kept)",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=_ERRORS,
)
def disable_webhook(
    endpoint_id: UUID,
    session: SessionDep,
    principal: Annotated[Principal, require("alerts:write")],
) -> Response:
    webhooks.disable_endpoint(session, actor=principal.actor, endpoint_id=str(endpoint_id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/v1/alert-webhooks/{endpoint_id:uuid}/deliveries",
    operation_id="listAlertDeliveries",
    dependencies=[known_query_only("limit", "cursor")],
    summary="An endpoint's delivery log: attempts, status codes, next retry",
    responses=_ERRORS,
)
def list_deliveries(
    endpoint_id: UUID,
    session: SessionDep,
    rt: RuntimeDep,
    page: PageDep,
    principal: Annotated[Principal, require("alerts:read")],
) -> DeliveryPage:
    try:
        after = int(page.after) if page.after is not None else None
    except ValueError as exc:
        raise ValidationFailed("cursor was not issued by this server") from exc
    rows, last = webhooks.deliveries(
        session, endpoint_id=str(endpoint_id), after=after, limit=page.limit
    )
    return DeliveryPage(
        items=[DeliveryRead.model_validate(d, from_attributes=True) for d in rows],
        next_cursor=encode_cursor(rt, str(last)) if last else None,
    )
