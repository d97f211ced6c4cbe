"""Who is calling: the peer's uid from SO_PEERCRED, mapped to an operator by configuration."""

from __future__ import annotations

import grp
import os
import pwd
import socket
import struct
from dataclasses import dataclass

from nexus_core.config import Settings
from nexus_core.errors import ForbiddenError

ROLE_RANK = {"viewer": 0, "operator": 1, "admin": 2}


@dataclass(frozen=True)
class Peer:
    pid: int
    uid: int
    gid: int


@dataclass(frozen=True)
class Operator:
    name: str
    uid: int
    role: str
    organization: str

    def allows(self, needed: str) -> bool:
        return ROLE_RANK[self.role] >= ROLE_RANK[needed]


def peer_credentials(sock: socket.socket) -> Peer:
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    return Peer(pid, uid, gid)


def _user_and_groups(uid: int, gid: int) -> tuple[str, set[str]]:
    try:
        entry = pwd.getpwuid(uid)
    except KeyError:
        return f"uid{uid}", set()
    groups = set()
    for g in os.getgrouplist(entry.pw_name, gid):
        try:
            groups.add(grp.getgrgid(g).gr_name)
        except KeyError:
            continue
    return entry.pw_name, groups


def resolve(settings: Settings, peer: Peer) -> Operator:
    """The operator for a peer: a user rule first, then a group rule; the daemon's own user is admin."""
    name, groups = _user_and_groups(peer.uid, peer.gid)
    for rule in settings.operators:
        if rule.user and rule.user == name:
            return Operator(name, peer.uid, rule.role, rule.organization)
    for rule in settings.operators:
        if rule.group and rule.group in groups:
            return Operator(name, peer.uid, rule.role, rule.organization)
    if peer.uid == os.getuid():
        return Operator(name, peer.uid, "admin", settings.organization)
    raise ForbiddenError(
        f"user {name} (uid {peer.uid}) is not an operator of this daemon; an admin can add "
        f'[[operators]] user = "{name}" role = "viewer" to nexus.toml')
