"""The evidence pack: what auditors ask for, collected from each app's selectors, as one JSON
document and a PDF drawn from it (reportlab; fonts embedded from reportlab's own Vera TTFs,
charts with reportlab.graphics). No key material, token or secret is read: key rows are the
inventory's metadata, access rows are who/what/when, and the PDF shows only the document."""
from __future__ import annotations

import io
from collections import Counter
from datetime import timedelta

from django.utils import timezone

SECTIONS = ("Scope", "Key inventory and aging", "Rotation compliance", "Access requests and reviews",
            "Backups and DR drills", "Posture", "Audit-chain verification")
AGE_BUCKETS = (("< 90 days", 90), ("90-180 days", 180), ("180 days-1 year", 365),
               ("1-2 years", 730), ("> 2 years", None))
MAX_ROWS = 50000  # per list (and per HSM for keys) in the JSON; the PDF shows the first PDF_ROWS
PDF_ROWS = 200
BACKUP_DAYS = 30


def _iso(value) -> str | None:
    return value.isoformat(timespec="seconds") if value else None


def _bucket(days: float) -> str:
    for label, limit in AGE_BUCKETS:
        if limit is None or days < limit:
            return label
    return AGE_BUCKETS[-1][0]


def _keys(now) -> dict:
    from compliance_app.checks import ROTATION_MAX_DAYS, rotation_interval_days
    from keys_app.selectors import KeyFilter, key_list
    from portal.gateway.selectors import hsm_list

    rows = []
    for hsm in hsm_list():
        for key in key_list(hsm=hsm, filters=KeyFilter(state="active"))[:MAX_ROWS]:
            age = (now - key.created_on).total_seconds() / 86400 if key.created_on else None
            interval = rotation_interval_days(key.rotation_policy)
            rows.append({"hsm": hsm.name, "name": key.name, "type": key.kty,
                         "size_or_curve": str(key.key_size or key.curve or ""),
                         "enabled": key.enabled, "created": _iso(key.created_on),
                         "age_days": round(age) if age is not None else None,
                         "expires": _iso(key.expires), "versions": key.version_count,
                         "rotation_policy": key.rotation_policy is not None,
                         "rotation_interval_days": round(interval) if interval is not None else None,
                         "rotation_compliant": interval is not None and interval <= ROTATION_MAX_DAYS})
    histogram = Counter(_bucket(r["age_days"]) for r in rows if r["age_days"] is not None)
    return {
        "keys": rows,
        "age_histogram": [{"bucket": label, "keys": histogram.get(label, 0)} for label, _ in AGE_BUCKETS],
        "rotation": {
            "keys": len(rows),
            "with_rotation_policy": sum(r["rotation_policy"] for r in rows),
            "rotating_within_2_years": sum(r["rotation_compliant"] for r in rows),
            "without_policy_or_expiry": [f"{r['hsm']}/{r['name']}" for r in rows
                                         if not r["rotation_policy"] and not r["expires"]],
        },
    }


def _access() -> dict:
    from access_app.selectors import access_requests, campaign_evidence, campaigns

    requests = [{"id": r.pk, "hsm": r.hsm.name, "kind": r.kind, "principal_id": r.principal_id,
                 "principal_name": r.principal_name, "role": r.role_name, "scope": r.scope,
                 "duration_hours": r.duration_hours, "ticket": r.ticket,
                 "requested_by": r.requested_by_name, "approval_request_id": r.approval_request_id,
                 "status": r.status, "created": _iso(r.created_at), "granted": _iso(r.granted_at),
                 "expires": _iso(r.expires_at), "ended": _iso(r.ended_at)}
                for r in access_requests().order_by("-created_at")[:MAX_ROWS]]
    approvals = _approvals()
    by_id = {a["id"]: a for a in approvals}
    for request in requests:
        approval = by_id.get(request["approval_request_id"])
        request["approved_by"] = [d["by"] for d in approval["decisions"]
                                  if d["decision"] == "approve"] if approval else []
    reviews = []
    for campaign in campaigns().order_by("-started_at")[:200]:
        data = campaign_evidence(campaign=campaign)
        decisions = Counter(item["decision"] for item in data["items"])
        reviews.append({**data["campaign"], "items": len(data["items"]), "decisions": dict(decisions)})
    return {"requests": requests, "reviews": reviews, "approvals": approvals}


def _approvals() -> list[dict]:
    """Maker-checker requests (key purge, restore, access...) and who decided them."""
    from portal.approvals.selectors import approval_list

    return [{"id": a.pk, "operation": a.operation, "target": a.target, "requester": a.requester_name,
             "status": a.status, "required_approvals": a.required_approvals,
             "created": _iso(a.created), "decided": _iso(a.decided),
             "decisions": [{"by": d.approver_name, "decision": d.decision, "at": _iso(d.created),
                            "comment": d.comment} for d in a.decisions.all()]}
            for a in approval_list()[:MAX_ROWS]]


def _recovery(now) -> dict:
    from dr_app.selectors import backup_list, drill_list

    since = now - timedelta(days=BACKUP_DAYS)
    backups = list(backup_list().filter(started__gte=since)[:MAX_ROWS])
    per_day = Counter()
    for b in backups:
        if b.status == "succeeded" and b.finished:
            per_day[b.finished.date().isoformat()] += 1
    days = [(since + timedelta(days=i + 1)).date().isoformat() for i in range(BACKUP_DAYS)]
    drills = [{"id": d.pk, "primary": d.primary_name, "secondary": d.secondary_name,
               "started": _iso(d.created), "finished": _iso(d.finished), "passed": d.passed,
               "rto_seconds": d.rto_seconds, "rpo_seconds": d.rpo_seconds}
              for d in drill_list()[:MAX_ROWS]]
    return {"backups": [{"hsm": b.hsm.name if b.hsm else b.source_hsm_name, "folder": b.folder,
                         "status": b.status, "started": _iso(b.started), "finished": _iso(b.finished),
                         "keys": b.key_count} for b in backups],
            "successful_backups_per_day": [{"day": d, "backups": per_day.get(d, 0)} for d in days],
            "drills": drills}


def _posture() -> dict:
    from compliance_app.selectors import posture_latest

    run = posture_latest()
    if run is None:
        return {"run": None, "results": []}
    return {"run": {"id": run.pk, "started": _iso(run.started), "finished": _iso(run.finished),
                    "trigger": run.trigger, "passed": run.passed, "failed": run.failed,
                    "other": run.other},
            "results": [{"check": r.check_id, "title": r.title, "hsm": r.hsm_name or None,
                         "status": r.status, "summary": r.summary, "evidence": r.evidence,
                         "fix": r.fix} for r in run.results.all()]}


def _audit_chain() -> dict:
    """The latest finished audit-chain verification (portal.audit's AuditVerification)."""
    from portal.audit.models import AuditVerification

    row = AuditVerification.objects.filter(finished__isnull=False).order_by("-finished", "-id").first()
    if row is None:
        return {"verification": None, "note": "The audit chain has not been verified yet."}
    return {"verification": {"started": _iso(row.started), "finished": _iso(row.finished),
                             "trigger": row.trigger, "rows": row.rows, "first_seq": row.first_seq,
                             "head_seq": row.head_seq, "ok": row.ok,
                             "first_bad_seq": row.first_bad_seq, "reason": row.reason,
                             "checkpoints": row.checkpoints,
                             "checkpoint_problems": row.checkpoint_problems}}


def collect(*, pack) -> dict:
    """The evidence document (JSON-ready) for one pack."""
    from portal.gateway.selectors import hsm_list

    now = timezone.now()
    keys = _keys(now)
    return {
        "pack": {"id": pack.pk, "generated_at": _iso(now), "requested_by": pack.requested_by_name,
                 "sections": list(SECTIONS)},
        "scope": {"hsms": [{"name": h.name, "role": h.role, "region": h.region,
                            "resource_id": h.arm_resource_id} for h in hsm_list()]},
        "inventory": {"keys": keys["keys"], "age_histogram": keys["age_histogram"]},
        "rotation": keys["rotation"],
        "access": _access(),
        "recovery": _recovery(now),
        "posture": _posture(),
        "audit_chain": _audit_chain(),
    }


# -- the PDF ---------------------------------------------------------------------------------

def _fonts() -> tuple[str, str]:
    """Vera and Vera Bold from reportlab's own font folder, embedded in the PDF."""
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont

    if "PackVera" not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(TTFont("PackVera", "Vera.ttf"))
        pdfmetrics.registerFont(TTFont("PackVeraBd", "VeraBd.ttf"))
    # A drawing starts its state with reportlab's default font (Helvetica, not embedded).
    from reportlab.graphics.shapes import STATE_DEFAULTS

    STATE_DEFAULTS["fontName"] = "PackVera"
    return "PackVera", "PackVeraBd"


def _bar_chart(title: str, labels: list[str], values: list[int], font: str, *, width=460, height=190):
    from reportlab.graphics.charts.barcharts import VerticalBarChart
    from reportlab.graphics.shapes import Drawing, String
    from reportlab.lib import colors

    drawing = Drawing(width, height)
    chart = VerticalBarChart()
    chart.x, chart.y, chart.width, chart.height = 40, 40, width - 60, height - 70
    chart.data = [values or [0]]
    chart.categoryAxis.categoryNames = labels or [""]
    chart.categoryAxis.labels.fontName = font
    chart.categoryAxis.labels.fontSize = 6 if len(labels) > 10 else 8
    if len(labels) > 10:
        chart.categoryAxis.labels.angle = 60
        chart.categoryAxis.labels.boxAnchor = "ne"
    chart.valueAxis.labels.fontName = font
    chart.valueAxis.valueMin = 0
    chart.valueAxis.valueMax = max(values + [1])
    chart.valueAxis.valueStep = max(1, (max(values + [1]) + 4) // 5)
    chart.bars[0].fillColor = colors.HexColor("#0f6cbd")
    drawing.add(chart)
    drawing.add(String(width / 2, height - 12, title, fontName=font, fontSize=9, textAnchor="middle"))
    return drawing


def render_pdf(document: dict) -> bytes:
    """The PDF of an evidence document: one heading per section, tables, two charts."""
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.lib.units import mm
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle
    from xml.sax.saxutils import escape

    regular, bold = _fonts()
    styles = getSampleStyleSheet()
    for style in styles.byName.values():
        style.fontName = bold if style.name.startswith(("Heading", "Title")) else regular
    body, small = styles["BodyText"], styles["BodyText"].clone("small", fontSize=7, leading=9)

    def when(value):
        return value[:16].replace("T", " ") if value else ""

    def para(text, style=body):
        return Paragraph(escape(str(text)), style)

    def table(header, rows, widths=None, empty="None recorded."):
        if not rows:
            return [para(empty, small)]
        data = [[para(h, small) for h in header]] + [[para("" if c is None else c, small) for c in row]
                                                      for row in rows[:PDF_ROWS]]
        t = Table(data, colWidths=widths, repeatRows=1)
        t.setStyle(TableStyle([("FONTNAME", (0, 0), (-1, -1), regular),
                               ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e8eef6")),
                               ("GRID", (0, 0), (-1, -1), 0.25, colors.grey),
                               ("VALIGN", (0, 0), (-1, -1), "TOP")]))
        out = [t]
        if len(rows) > PDF_ROWS:
            out.append(para(f"… and {len(rows) - PDF_ROWS} more rows in the JSON file.", small))
        return out

    story = []
    pack = document["pack"]
    story += [para("Managed HSM evidence pack", styles["Title"]),
              para(f"Evidence pack {pack['id']}, generated {pack['generated_at']} UTC for "
                   f"{pack['requested_by'] or 'the portal'}. The JSON file of the same pack holds "
                   "every row; this document shows the first rows of each list."),
              Spacer(1, 4 * mm)]

    story.append(para("Scope", styles["Heading1"]))
    story += table(["HSM", "Role", "Region", "Azure resource id"],
                   [[h["name"], h["role"], h["region"], h["resource_id"]] for h in document["scope"]["hsms"]],
                   [25 * mm, 20 * mm, 25 * mm, 100 * mm])

    inv = document["inventory"]
    story.append(para("Key inventory and aging", styles["Heading1"]))
    story.append(para(f"{len(inv['keys'])} keys (not deleted). Key material never leaves the HSM; "
                      "these are the inventory's attributes."))
    story.append(_bar_chart("Key age histogram (keys by age of their current version)",
                            [b["bucket"] for b in inv["age_histogram"]],
                            [b["keys"] for b in inv["age_histogram"]], regular))
    story += table(["HSM", "Key", "Type", "Created", "Age (days)", "Expires", "Versions", "Enabled"],
                   [[k["hsm"], k["name"], f"{k['type']} {k['size_or_curve']}", when(k["created"]),
                     k["age_days"], when(k["expires"]) or "never", k["versions"], "yes" if k["enabled"] else "no"]
                    for k in inv["keys"]])

    rot = document["rotation"]
    story.append(para("Rotation compliance", styles["Heading1"]))
    story.append(para(f"{rot['with_rotation_policy']} of {rot['keys']} keys have a rotation policy; "
                      f"{rot['rotating_within_2_years']} rotate at least every 2 years. "
                      f"{len(rot['without_policy_or_expiry'])} have neither a rotation policy nor an "
                      "expiry."))
    story += table(["Key", "Rotation policy", "Interval (days)", "Within 2 years"],
                   [[f"{k['hsm']}/{k['name']}", "yes" if k["rotation_policy"] else "no",
                     k["rotation_interval_days"], "yes" if k["rotation_compliant"] else "no"]
                    for k in inv["keys"]])

    acc = document["access"]
    story.append(para("Access requests and reviews", styles["Heading1"]))
    story += table(["#", "HSM", "Principal", "Role", "Scope", "Status", "Requested / approved by",
                    "Created", "Expires"],
                   [[r["id"], r["hsm"], r["principal_name"] or r["principal_id"], r["role"], r["scope"],
                     r["status"], " / ".join(filter(None, [r["requested_by"], ", ".join(r["approved_by"])])),
                     when(r["created"]), when(r["expires"])]
                    for r in acc["requests"]],
                   [10 * mm, 18 * mm, 25 * mm, 25 * mm, 22 * mm, 15 * mm, 18 * mm, 22 * mm, 22 * mm],
                   empty="No access requests.")
    story.append(Spacer(1, 3 * mm))
    story.append(para("Approvals (maker-checker)", styles["Heading3"]))
    story += table(["#", "Operation", "Target", "Requested by", "Status", "Created", "Decisions"],
                   [[a["id"], a["operation"], a["target"], a["requester"], a["status"], when(a["created"]),
                     "; ".join(f"{d['decision']} by {d['by']} {when(d['at'])}" for d in a["decisions"])]
                    for a in acc["approvals"]],
                   [10 * mm, 25 * mm, 40 * mm, 22 * mm, 18 * mm, 22 * mm, 43 * mm],
                   empty="No approval requests.")
    story.append(Spacer(1, 3 * mm))
    story.append(para("Access reviews", styles["Heading3"]))
    story += table(["Review", "HSM", "Started by", "Started", "Ends", "Status", "Items", "Decisions"],
                   [[c["name"], c["hsm"], c["started_by"], when(c["started_at"]), when(c["ends_at"]),
                     c["status"], c["items"],
                     ", ".join(f"{k}: {v}" for k, v in sorted(c["decisions"].items()))]
                    for c in acc["reviews"]], empty="No access reviews.")

    rec = document["recovery"]
    story.append(para("Backups and DR drills", styles["Heading1"]))
    per_day = rec["successful_backups_per_day"]
    story.append(_bar_chart(f"Successful backups per day (last {BACKUP_DAYS} days)",
                            [d["day"][5:] for d in per_day], [d["backups"] for d in per_day], regular))
    story += table(["Drill", "Primary to secondary", "Started", "Finished", "Result", "RTO (s)", "RPO (s)"],
                   [[d["id"], f"{d['primary']} to {d['secondary']}", when(d["started"]), when(d["finished"]),
                     {True: "passed", False: "failed"}.get(d["passed"], "not finished"),
                     round(d["rto_seconds"]) if d["rto_seconds"] is not None else None,
                     round(d["rpo_seconds"]) if d["rpo_seconds"] is not None else None]
                    for d in rec["drills"]], empty="No DR drill has run.")

    post = document["posture"]
    story.append(para("Posture", styles["Heading1"]))
    if post["run"] is None:
        story.append(para("No posture run has finished yet."))
    else:
        run = post["run"]
        story.append(para(f"Run {run['id']} finished {run['finished']} UTC: {run['passed']} passed, "
                          f"{run['failed']} failed, {run['other']} not applicable or unknown."))
        story += table(["Check", "HSM", "Result", "Finding", "Fix"],
                       [[r["title"], r["hsm"] or "estate", r["status"], r["summary"], r["fix"]]
                        for r in post["results"]],
                       [40 * mm, 20 * mm, 15 * mm, 55 * mm, 45 * mm])

    chain = document["audit_chain"]
    story.append(para("Audit-chain verification", styles["Heading1"]))
    v = chain.get("verification")
    if v is None:
        story.append(para(chain.get("note", "No verification recorded.")))
    else:
        story.append(para(f"Last verification finished {v['finished']} UTC: "
                          f"{'intact' if v['ok'] else 'FAILED'}; {v['rows']} rows checked up to seq "
                          f"{v['head_seq']}; {v['checkpoints']} signed checkpoints checked."
                          + (f" First bad seq {v['first_bad_seq']}: {v['reason']}"
                             if v["first_bad_seq"] is not None else "")))

    out = io.BytesIO()
    doc = SimpleDocTemplate(out, pagesize=A4, title=f"Evidence pack {pack['id']}",
                            author="mhsm-portal", initialFontName=regular,
                            leftMargin=15 * mm, rightMargin=15 * mm,
                            topMargin=15 * mm, bottomMargin=15 * mm)

    def footer(canvas, doc_):
        canvas.setFont(regular, 7)
        canvas.drawString(15 * mm, 8 * mm, f"Evidence pack {pack['id']} · {pack['generated_at']} UTC · "
                                           f"page {doc_.page}")
    doc.build(story, onFirstPage=footer, onLaterPages=footer)
    return out.getvalue()
