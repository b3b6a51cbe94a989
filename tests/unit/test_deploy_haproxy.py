"""HAProxy runtime API: exact command lines, and answers read as HAProxy gives them."""

from __future__ import annotations

import pytest

from roadie.commands import haproxy as cmd

SOCK = "/run/haproxy/admin.sock"

# A real `show stat` header (HAProxy 2.6, bookworm) cut to a few rows.
STAT = "\n".join([
    '# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,statu'
    's,weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,lbtot,tracked,type,rat'
    'e,rate_lim,rate_max,check_status,check_code,check_duration,hrsp_1xx,hrsp_2xx,hrsp_3xx,hrsp_4xx,hrsp_'
    '5xx,hrsp_other,hanafail,req_rate,req_rate_max,req_tot,cli_abrt,srv_abrt,comp_in,comp_out,comp_byp,co'
    'mp_rsp,lastsess,last_chk,last_agt,qtime,ctime,rtime,ttime',
    'http,FRONTEND,,,3,10,8000,120,0,0,0,0,0,,,,,OPEN,,,,,,,,,1,2,0,,,,0,5,0,10,,,,0,100,0,0,0,0,,5,10,12'
    '0,,,0,0,0,0,,,,,,,,',
    'catalog,catalog-1,0,0,2,5,,60,0,0,,0,,0,0,0,0,UP,1,1,0,0,0,100,0,,1,3,1,,60,,2,3,,6,L7OK,200,1,0,58,'
    '0,1,1,0,,,,60,0,0,,,,,0,,,0,0,12,15',
    'catalog,catalog-2,0,0,0,5,,40,0,0,,0,,3,1,0,0,DRAIN,0,1,0,0,0,100,0,,1,3,2,,40,,2,0,,6,L7OK,200,1,0,'
    '40,0,0,0,0,,,,40,0,0,,,,,0,,,0,0,9,12',
    'catalog,BACKEND,0,0,2,5,800,100,0,0,0,0,,0,0,0,0,UP,1,1,0,,0,100,0,,1,3,0,,100,,1,3,,6,,,,0,98,0,1,1'
    ',0,,,,100,0,0,0,0,0,0,0,,,0,0,10,14',
    'streaming,streaming-1,0,0,0,0,,0,0,0,,0,,0,0,0,0,DOWN 1/2,1,1,0,1,1,5,5,,1,4,1,,0,,2,0,,0,L4CON,,0,0'
    ',0,0,0,0,0,,,,0,0,0,,,,,-1,,,0,0,0,0',
]) + "\n"


@pytest.mark.parametrize(("fn", "args", "expected"), [
    (cmd.set_state, (SOCK, "catalog", "catalog-1", "drain"),
     "echo 'set server catalog/catalog-1 state drain' | socat -t 10 stdio UNIX-CONNECT:/run/haproxy/admin.sock"),
    (cmd.set_state, (SOCK, "streaming", "streaming-2", "ready"),
     "echo 'set server streaming/streaming-2 state ready' | socat -t 10 stdio UNIX-CONNECT:/run/haproxy/admin.sock"),
    (cmd.set_weight, (SOCK, "catalog", "catalog-1", "10%"),
     "echo 'set server catalog/catalog-1 weight 10%' | socat -t 10 stdio UNIX-CONNECT:/run/haproxy/admin.sock"),
    (cmd.show_stat, (SOCK,), "echo 'show stat' | socat -t 10 stdio UNIX-CONNECT:/run/haproxy/admin.sock"),
])
def test_command_lines(fn, args, expected):
    assert fn(*args) == expected


@pytest.mark.parametrize(("answer", "error"), [
    ("\n", None),
    ("", None),
    ("No such server.\n", "No such server."),
    ("No such backend.\n\n", "No such backend."),
])
def test_a_set_answer_is_read_not_trusted(answer, error):
    assert cmd.check_set(answer) == error


def test_show_stat_servers():
    servers = cmd.parse_stat(STAT)
    assert set(servers) == {("catalog", "catalog-1"), ("catalog", "catalog-2"), ("streaming", "streaming-1")}
    c1, c2 = servers[("catalog", "catalog-1")], servers[("catalog", "catalog-2")]
    s1 = servers[("streaming", "streaming-1")]
    assert (c1.status, c1.weight, c1.sessions, c1.total, c1.up, c1.healthy) == ("UP", 1, 2, 60, True, True)
    assert (c2.status, c2.weight, c2.up, c2.healthy, c2.errors) == ("DRAIN", 0, False, True, 4)
    assert (s1.up, s1.healthy) == (False, False)
    assert c1.response_ms == 12


@pytest.mark.parametrize("answer", ["", "Unknown command.\n", "No such backend.\n"])
def test_show_stat_refuses_what_is_not_a_stat_table(answer):
    with pytest.raises(ValueError, match="not a show stat answer"):
        cmd.parse_stat(answer)
