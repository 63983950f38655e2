"""Who may do what over the control socket, from the peer's kernel-checked credentials.

The socket's mode (0660) and group decide who can connect at all; then each
connection's peer credentials (``SO_PEERCRED``: the uid and gid of the
process at the other end, which it cannot forge) give it a role:

* ``read`` — status, audit, dead letters, messages, waits, the suppression
  list, the deliverability funnel, a subject's status (by opaque id) and
  templates, the growth figures, partners and a user's story, experiments'
  readouts and assignments;
* ``send`` — also submit messages, record growth events and render templates
  (the platform's own user);
* ``operate`` — also pause, resume, breakers, reload, wedding-day mode,
  dead-letter replay and purge, suppressions added or removed, a sending
  domain's reputation pause ended, a subject's erasure, export (decrypted
  personal data) and consent, a key rotation, an experiment created or stopped.

The daemon's own user is always an operator. A peer with no role is refused
at once; a request beyond its role gets a ``forbidden`` reply. Both are
logged and audited by the server's caller.
"""

from __future__ import annotations

import contextlib
import enum
import grp
import os
import pwd
import socket
import struct

import attrs

from . import _growth_protocol as g
from . import _protocol as proto


class Role(enum.IntEnum):
    READ = 1
    SEND = 2
    OPERATE = 3


# What each request needs; anything not listed needs an operator.
_NEEDS: dict[type, Role] = {
    proto.Status: Role.READ,
    proto.Wait: Role.READ,
    proto.Audit: Role.READ,
    proto.DeadLetters: Role.READ,
    proto.DeadLetter: Role.READ,
    proto.Message: Role.READ,
    proto.Alerts: Role.READ,
    proto.SuppressionList: Role.READ,
    proto.SuppressionCheck: Role.READ,
    proto.DeliverabilityReport: Role.READ,
    proto.SubjectStatus: Role.READ,
    proto.TemplateShow: Role.READ,
    proto.TemplateList: Role.READ,
    proto.TemplateRender: Role.SEND,
    proto.Submit: Role.SEND,
    g.GrowthRecord: Role.SEND,
    g.GrowthReport: Role.READ,
    g.GrowthPartners: Role.READ,
    g.GrowthExplain: Role.READ,
    g.ExperimentShow: Role.READ,
    g.ExperimentList: Role.READ,
    g.ExperimentAssign: Role.READ,
}


def needed(request: proto.Request) -> Role:
    """Showing the wedding-day mode is a read; setting it needs an operator."""
    if isinstance(request, proto.WeddingDay) and request.state is None:
        return Role.READ
    return _NEEDS.get(type(request), Role.OPERATE)


@attrs.frozen
class Principals:
    """Users and groups, by name or number."""

    users: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()

    def match(self, peer: Peer) -> bool:
        return bool(set(self.users) & peer.user_names) or bool(set(self.groups) & peer.group_names)


@attrs.frozen
class Peer:
    """The process at the other end of a connection."""

    pid: int
    uid: int
    gid: int
    user_names: frozenset[str]  # its name and its number, as text
    group_names: frozenset[str]  # its groups (primary and supplementary), names and numbers

    @classmethod
    def of(cls, sock: socket.socket) -> Peer:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        pid, uid, gid = struct.unpack("3i", raw)
        return cls.from_ids(pid, uid, gid)

    @classmethod
    def from_ids(cls, pid: int, uid: int, gid: int) -> Peer:
        users = {str(uid)}
        gids = {gid}
        try:
            entry = pwd.getpwuid(uid)
        except KeyError:
            pass  # a uid with no name (a container's): numbers still match
        else:
            users.add(entry.pw_name)
            gids.update(os.getgrouplist(entry.pw_name, gid))
        return cls(pid, uid, gid, frozenset(users), frozenset(_group_names(gids)))

    def describe(self) -> str:
        names = sorted(self.user_names - {str(self.uid)})
        return f"uid {self.uid}" + (f" ({names[0]})" if names else "") + f", pid {self.pid}"


def _group_names(gids: set[int]) -> set[str]:
    names = {str(gid) for gid in gids}
    for gid in gids:
        with contextlib.suppress(KeyError):  # a gid with no name: its number still matches
            names.add(grp.getgrgid(gid).gr_name)
    return names


@attrs.frozen
class AccessPolicy:
    operators: Principals = Principals()
    senders: Principals = Principals()
    readers: Principals = Principals()
    owner_uid: int = attrs.field(factory=os.getuid)  # the daemon's own user

    def role(self, peer: Peer) -> Role | None:
        if peer.uid == self.owner_uid or self.operators.match(peer):
            return Role.OPERATE
        if self.senders.match(peer):
            return Role.SEND
        if self.readers.match(peer):
            return Role.READ
        return None
