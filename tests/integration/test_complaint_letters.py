"""Seed row 12: the customer hears in writing that a complaint arrived and how it ended."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.db.models import Notice, Staff
from engine.run import run_night

# 10:00 in Shanghai on Monday 2026-11-23.
AS_OF = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
LETTERS = ("complaint_received", "complaint_resolution")


def _letters(engine) -> list[Notice]:
    with Session(engine) as session:
        query = select(Notice).where(Notice.template.in_(LETTERS)).order_by(Notice.id)
        return list(session.scalars(query))


def test_complaint_letters_go_to_the_customer_once_in_their_language(service_data, settings_for):
    mei = service_data.customer("Lin Mei", locale="zh-TW")
    ana = service_data.customer("Ana Ruiz", locale="es")
    service_data.complaint(mei, AS_OF - timedelta(hours=3), number="CP-NEW")
    service_data.complaint(ana, AS_OF - timedelta(days=10), number="CP-OLD")  # long acknowledged
    service_data.complaint(
        ana,
        AS_OF - timedelta(days=3),
        number="CP-CLAIM",
        kind="claim",
        status="closed",
        first_reply_at=AS_OF - timedelta(days=3),
        closed_at=AS_OF - timedelta(hours=5),
        outcome="Se sustituyó el compresor.",
        compensation=Decimal("200.00"),
        currency="EUR",
    )
    settings = settings_for(str(service_data.engine.url))

    for night in (AS_OF, AS_OF, AS_OF + timedelta(days=1)):
        assert run_night(settings, service_data.engine, as_of=night).outcome == "success"

    received, resolution = _letters(service_data.engine)
    # CP-OLD and CP-CLAIM arrived more than two days ago: an acknowledgement now helps nobody.
    assert (received.recipient_address, received.locale) == ("lin.mei@example.com", "zh-TW")
    assert received.subject == "您的客訴 CP-NEW 已收到"
    assert "於2026/11/23\u2009清晨7:00收到" in received.body_text  # 07:00 in Shanghai, CLDR zh-Hant
    assert "依申訴" in received.body_text and received.body_html
    # 001 五.1: on accepting a complaint, apologise and promise to handle it quickly.
    assert "造成您的不便，我們深感抱歉" in received.body_text
    assert "我們將儘快處理" in received.body_text

    assert (resolution.recipient_address, resolution.locale) == ("ana.ruiz@example.com", "es")
    assert resolution.subject == "Su reclamación CP-CLAIM está resuelta"
    assert "se cerró el 23 de noviembre de 2026" in resolution.body_text
    assert "Resultado: Se sustituyó el compresor." in resolution.body_text
    assert "Indemnización acordada: 200,00\xa0€" in resolution.body_text


def test_a_serious_complaint_reaches_the_vice_general_manager_marked_serious(
    service_data, settings_for
):
    """000 art.20: 情节重大者,服务部应即提呈副总经理……提前加以处理,并将处理情况函告该客户."""
    ada = service_data.customer("Ada Wong")
    service_data.add(
        Staff,
        branch_id=None,
        name="HQ service manager",
        email="service_manager@hq.example",
        role="service_manager",
        locale="en",
    )  # fmt: skip: a general complaint goes to head office's service department
    service_data.complaint(ada, AS_OF - timedelta(hours=1), number="CP-BIG", severity="serious")
    service_data.complaint(ada, AS_OF - timedelta(hours=1), number="CP-SMALL")
    run_night(settings_for(str(service_data.engine.url)), service_data.engine, as_of=AS_OF)

    with Session(service_data.engine) as session:
        letters = {
            n.subject: n
            for n in session.scalars(select(Notice).where(Notice.template == "escalation"))
        }
    serious = [n for s, n in letters.items() if "CP-BIG" in s]
    (vgm,) = serious
    assert vgm.recipient_address == "vice_general_manager@hq.example" and vgm.urgent
    assert vgm.subject.startswith("[Serious complaint] [Action needed]")
    assert "it goes to you at once, to be handled ahead of others" in vgm.body_text
    general = [n for s, n in letters.items() if "CP-SMALL" in s]
    assert general and all("重大" not in n.subject and "Serious" not in n.subject for n in general)
