"""What admission granted (or may have granted: an answer lost on the way), as the request's
usage record carries it for the aggregator to settle (limits/store.py's docstring).

Unconfirmed admissions. When DynamoDB does not answer within the admission deadline, the
client gets a 503, yet the update may land later: its reservation would then stay on the
budget for good, with nothing to settle it. So a budget's admission, in its one
UpdateItem, also sets a marker attribute named after the request id
(`m<12 characters>` = the reservation, items.marker_attribute) on condition that it is
absent (a retried attempt that had landed counts once) and that the item's `fence` is
older than the admission (updates.month_update). A 503 whose admission went unanswered
raises AdmissionUnconfirmedError; the request's record carries the admission with
`reserved_unconfirmed_ms` (when it was sent), and the aggregator refunds the reservation
with `REMOVE marker` on condition that the marker exists: only if it landed, and once.
Finding no marker, the aggregator first raises the fence to the admission's time (an
admission still on its way can no longer land) and looks once more. A client that leaves
while its admission is on its way cancels it at once (the call goes on in its thread and
may land): so the record carries the admission unconfirmed from the moment it is sent
(`in_flight`) until its answer confirms it, and is settled the same way.

A marker is needed only while the outcome is unknown, and every marker on the month item
costs write units on each admission (an update is charged by the item's size, per KB):
so an instance removes the markers of its confirmed admissions with its next admission
on that item (limits/markers.py), and the aggregator removes those still there when it
settles their records. The item then holds about one marker per admission in flight.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from gateway.errors import DependencyError
from gateway.keys.apikey import ApiKey


@dataclass(frozen=True)
class Admission:
    """What admission granted, and what settling needs."""

    key_id: str
    # Tokens reserved (in the window if the key has tpm, in the month if it has a budget).
    reserved_tokens: int = 0
    # x-ratelimit-* headers for the response (empty for a key without limits).
    headers: dict[str, str] = field(default_factory=dict)
    # Epoch minute whose window holds the token reservation (keys with tpm).
    window_minute: int | None = None
    # "YYYY-MM" whose budget holds the token reservation (keys with monthly_tokens).
    month: str | None = None
    # The admission's marker attribute on the month item (keys with a budget, admitted
    # with a request id) and when the admission was sent (epoch ms, the fence's unit).
    marker: str | None = None
    sent_ms: int | None = None
    # False: the gateway never learned whether the update landed (AdmissionUnconfirmedError).
    confirmed: bool = True


class AdmissionUnconfirmedError(DependencyError):
    """Admission to a key with a budget failed without an answer (its deadline passed, or
    DynamoDB failed): a 503 for the client, but the update may have landed, or may land
    later. `admission` is what it would have reserved (`confirmed` False): the request's
    usage record carries it, and the aggregator refunds it if, and only if, its marker
    shows that it landed."""

    def __init__(self, message: str, *, admission: Admission) -> None:
        super().__init__(message)
        self.admission = admission


def granted(key: ApiKey, admission: Admission) -> Admission:
    """The admission as the record carries it: a window minute only where it holds tokens."""
    return admission if key.tpm is not None else replace(admission, window_minute=None)


def in_flight(key: ApiKey, planned: Admission) -> Admission | None:
    """The admission as the request's record carries it while its update is on its way
    (LimitStore.admit_planned): a budget's, marked, unconfirmed, so that if the request
    ends meanwhile (its client left) the aggregator settles the reservation if it landed;
    None for a window's (it lapses with its minute) or an unmarked one."""
    if planned.month is None or planned.marker is None:
        return None
    return granted(key, replace(planned, confirmed=False))


def unconfirmed(key: ApiKey, planned: Admission, message: str) -> DependencyError:
    """The 503 of an admission left without an answer: AdmissionUnconfirmedError when it
    was marked (a budget's), else a plain DependencyError (a window's reservation lapses
    with its minute)."""
    pending = in_flight(key, planned)
    if pending is None:
        return DependencyError(message)
    return AdmissionUnconfirmedError(message, admission=pending)
