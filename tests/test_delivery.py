"""Delivery tickets: stored/delivered settle once every share did, only after seal(); tracking()."""

from __future__ import annotations

import asyncio

from kawa.delivery import Ticket, current, hurry, tracking


def test_ticket_without_shares_settles_at_seal() -> None:
    async def run() -> None:
        ticket = Ticket()
        assert not ticket.stored.done()
        ticket.seal()
        assert ticket.stored.done() and ticket.delivered.done()

    asyncio.run(run())


def test_stored_then_delivered_after_every_share() -> None:
    async def run() -> None:
        ticket = Ticket()
        a, b = ticket.join(), ticket.join()
        a.mark_stored()
        ticket.seal()
        assert not ticket.stored.done()
        b.mark_stored()
        b.mark_stored()                       # settling twice counts once
        assert ticket.stored.done() and not ticket.delivered.done()
        a.mark_delivered()
        assert not ticket.delivered.done()
        b.mark_delivered()
        assert ticket.delivered.done()

    asyncio.run(run())


def test_delivered_implies_stored_and_nothing_settles_before_seal() -> None:
    async def run() -> None:
        ticket = Ticket()
        share = ticket.join()
        share.mark_delivered()
        assert not ticket.stored.done()       # more shares may still join
        late = ticket.join()
        ticket.seal()
        assert not ticket.stored.done()
        late.mark_delivered()
        assert ticket.stored.done() and ticket.delivered.done()

    asyncio.run(run())


def test_tracking_sets_and_restores_current() -> None:
    async def run() -> None:
        assert current() is None
        outer, inner = Ticket(), Ticket()
        with tracking(outer):
            assert current() is outer
            with tracking(inner):
                assert current() is inner
            assert current() is outer

            async def child() -> Ticket | None:
                return current()

            assert await asyncio.create_task(child()) is outer    # tasks inherit the context
        assert current() is None

    asyncio.run(run())


def test_hurry_asks_each_output_once_and_only_for_unsettled_tickets() -> None:
    async def run() -> None:
        calls: list[str] = []

        def sooner_a() -> None:
            calls.append("a")

        def sooner_b() -> None:
            calls.append("b")

        first, second, settled = Ticket(), Ticket(), Ticket()
        for ticket in (first, second):
            ticket.join()
            ticket.on_hurry(sooner_a)
            ticket.on_hurry(sooner_a)          # one output, many emits: registered once
        second.on_hurry(sooner_b)
        settled.on_hurry(lambda: calls.append("settled"))
        settled.seal()
        assert hurry([first, None, second, settled]) == 2
        assert sorted(calls) == ["a", "b"]
        assert hurry([Ticket()]) == 0         # no output waits on a timer for it

    asyncio.run(run())


def test_the_held_lines_of_two_filters_add_up_and_one_unknown_makes_them_unknown() -> None:
    async def go() -> None:
        ticket = Ticket(("app.log", 100), start=0)
        ticket.hold_back(40, [40, 60])
        ticket.hold_back(20, [20, 60])            # a second concat in the pipeline
        assert ticket.checkpoint == ("app.log", 20) and ticket.held_lines == [20, 40, 60]
        ticket.hold_back(30, None)
        assert ticket.checkpoint == ("app.log", 20) and ticket.held_lines is None
        ticket.hold_back(10, [10])                # once unknown, it stays so
        assert ticket.checkpoint == ("app.log", 10) and ticket.held_lines is None

    asyncio.run(go())
