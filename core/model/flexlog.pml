/*
 * FlexLog: ordering + replication + view change of ONE root-owned color, in Promela.
 * README.md next to this file says what is modelled, what is abstracted away and how to run.
 *
 *   proctype Client      core/client.py            _ShardWriter: submit, resend, resend_unacked
 *                                                  (stream reopened), on_acks, view_changed
 *   proctype Replica(i)  core/replica_protocol.py  ReplicaProtocol: prepare, _order/flush_orders,
 *                                                  grants/_settled/_committed/_fail/_order_again,
 *                                                  hello/leaf_attached/leaf_lost, tick (repair,
 *                                                  _release_held, re-order, _find_holes),
 *                                                  seal/sealed/apply_fill, store_copy, catch-up
 *                        core/replica.py           the adapter's _repair, _catch_up, _copy_gap,
 *                                                  _seal (members in turn), _fill
 *   proctype Leaf        core/sequencer_protocol.py SequencerProtocol (leaf node): replica_hello,
 *                                                  _check_shard, order/_order, _grant_reply,
 *                                                  parent_lost, parent_hello
 *                        core/ordering.py          OrderingNode.on_grant (relayed), tails(),
 *                                                  fail_in_flight
 *   proctype Root        core/sequencer_protocol.py the root node: child_ready, child_requests;
 *                        core/ordering.py          OrderingNode.assign
 *   proctype Controller  core/controller.py        Controller.decide; the launcher's restarts
 *
 * Properties (assert): P0 a root never hands out an SN some replica stores or will store,
 * P1 an acknowledged append is stored at its SN on every readable replica (and a replica only
 * acks a token with an SN where it stores that token), P2 no SN holds two different payloads
 * on two replicas (entry or fill marker), P2b one entry never gets two SNs, P3 one client's
 * appends get SNs in submission order, P4 stored entries are never replaced (so every
 * replica's tail only grows).
 *
 * The model is the protocol as coded (as of commit c2f9673), plus two changes without which
 * it fails (README.md, "Findings"); each AS_CODED_* switch restores what the code does.
 *
 * Variants (spin -D...):
 *   BUGGY_ROOT_RECOVERY  the leaf tells a restarted root only the tails its replicas reported
 *                        when they attached, not the ends of the grants it relayed since.
 *   BUGGY_ACK_TAKEN      a grant for an SN that holds another entry is acked with that SN.
 *   AS_CODED_HELLO       a replica's hello lists the tokens of its volatile _recent and its
 *                        early grants (none it committed before its own restart), and the
 *                        leaf does not count those grants' SNs in the tail it reports.
 *   OLD_HELLO            the hello before commit c2f9673: _recent only, no early grants.
 *   OLD_FILL             before c2f9673: the fill goes to the members of the view at fill
 *                        time even if one of them joined after the seal went out.
 *   AS_CODED_ATTACH      a replica attaching to a running leaf gets only the grants relayed
 *                        after the leaf read its hello.
 * Checks: NO_P0 leaves P0 out (to see what a bug does to the client-visible properties);
 *   CHECK_QUIESCENT: once nothing can move, every append completed or failed and no readable
 *   replica has a hole (needs enough MAXFILL and the client's re-sends);
 *   CHECK_FAILED_NOT_STORED: an append the client saw fail is stored nowhere (fails: README).
 * Bounds: MAXRC root crashes, MAXLC leaf crashes, MAXREP replica crashes (CRASHABLE: which
 *   replicas, bit mask), MAXRM removals of a dead replica from the view (SLOW_RESTART: a dead
 *   replica restarts only once removed), MAXFILL seal attempts, NSN SNs the root hands out;
 *   NO_RESEND: the client does not re-send on its timer (only on reopening a broken stream).
 */

#define NR    2            /* replicas of the shard (RESP/PEER and a few guards assume 2) */
#define NT    2            /* appends of one client: tokens 1..NT, payload = token */
#ifndef NSN
#define NSN   4            /* SNs 0..NSN-1: the root hands out nothing beyond (bound) */
#endif
#define FILLV 3            /* payload of a fill marker: no token has it */

#ifndef MAXRC
#define MAXRC 1
#endif
#ifndef MAXLC
#define MAXLC 1
#endif
#ifndef MAXREP
#define MAXREP 1
#endif
#ifndef MAXRM
#define MAXRM 1
#endif
#ifndef CRASHABLE
#define CRASHABLE 3        /* which replicas may crash: bit 0 R0, bit 1 R1 */
#endif
#ifdef SLOW_RESTART
#define RESTART_OK(x) (!member[x])   /* down longer than the failure timeout: removed first */
#else
#define RESTART_OK(x) true
#endif
#ifndef MAXFILL
#define MAXFILL 1
#endif

#define IDLE    0
#define PENDING 1
#define DONE    2
#define FAILED  3

#define CAP_C2R 4
#define CAP_R2L 4
#define CAP_L2R 4

mtype = { ORDER, HELLO, GRANT, REJ_UNAV, REJ_STALE, FWD, REPORT };

/* ---- the view (core/view.py): the controller's change and every live replica's reaction to
   it (ReplicaProtocol.view_changed) are one step; the leaf and the client see it at once ---- */
byte epoch;
bool member[NR];
bool readable[NR];

#define PEER(x) (1 - (x))
/* ShardView.responsible(): the first readable member, else the first member */
#define RESP(x) ((readable[x] && ((x) == 0 || !readable[0])) || \
                 (!readable[0] && !readable[1] && member[x] && ((x) == 0 || !member[0])))
/* ReplicaProtocol.readable: readable in the view, and the view knows this incarnation */
#define SELFREAD(x) (readable[x] && !rep[x].restarted)
/* a peer that answers reads (repair, gap copy, catch-up source): alive and SELFREAD */
#define SERVES(x) (rep[x].up && SELFREAD(x))

/* ---- replicas --------------------------------------------------------------------------- */
typedef Rep {
  byte store[NSN];      /* durable (PM): 0 nothing, 1..NT that append, FILLV a fill marker */
  byte prefix;          /* derived: every SN below is stored (what contiguous readers see) */
  byte high;            /* derived: one past the highest stored SN (the tail it reports) */
  bool sealed[NSN];     /* _sealed (volatile, as coded) */
  bool up;
  bool restarted;       /* a new incarnation the view does not know yet */
  bool attached;        /* its leaf stream is up */
  bool prep[NT+1];      /* _ungranted */
  byte pfirst;          /* of the ungranted tokens, the one prepared first (prepare order) */
  byte ord[NT+1];       /* 0, 1 queued to order (_to_order), 2 in the batch in flight */
  bool held;            /* _held: the color waits for the sweep to order it again */
  byte early[NT+1];     /* sn+1 of a grant that outran the prepare (_early) */
  byte recent[NT+1];    /* sn+1 it committed the token at (_recent) */
  byte caughtUp;        /* caught_up_epoch + 1 (0: none) */
}
Rep rep[NR];

/* ---- client (pipelined: it submits the next append before the previous one completed) --- */
typedef AckRow { byte by[NR] }   /* sn+1 each replica acked the token with */
AckRow acked[NT+1];
byte cstat[NT+1];
byte lastSn[NT+1];               /* sn+1 of the latest ack: the client resolves with it */
byte doneSn[NT+1];
byte nextTok = 1;
bool cbroken[NR];                /* its append stream to that replica broke */

/* ---- leaf sequencer ---------------------------------------------------------------------- */
bool lready = true;
bool reported[NR];
bool lfan[NR];                   /* replicas attached: every grant goes to all of them */
byte tailL;                      /* counters of the color: tails learned from hellos */
byte relEnd;                     /* OrderingNode.relayed: end of the grants relayed from above */
byte lrecent[NT+1];              /* _recent_grants: sn+1 */
bool linfl[NT+1];                /* _in_flight: the token went up and is not answered */
byte lask[NT+1];                 /* the replicas that asked for it (bit x: replica x, alive) */
bool rootLink = true;
bool rootKnows = true;           /* the root got this leaf's tails on the current link */
byte lcrashes;

/* ---- root sequencer ---------------------------------------------------------------------- */
bool rready = true;
byte rctr;
byte rcrashes;

/* ---- controller and the launcher -------------------------------------------------------- */
byte repcrashes;
byte removals;

/* ---- one seal + fill at a time (the adapter's _seal and _fill go through members in turn) */
byte fstate;                     /* 0 idle, 1 sealing, 2 filling */
byte fby, fg, fval, fnext, fills;
bool fmem[NR];                   /* the members this phase goes to */

/* ---- streams: FIFO, emptied when either end dies ------------------------------------------ */
chan c2r[NR] = [CAP_C2R] of { byte };                    /* prepare(token) */
chan r2l[NR] = [CAP_R2L] of { mtype, byte, byte, byte }; /* HELLO(high, rec1, rec2),
                                                            ORDER(t1, epoch, t2): one batch */
chan l2r[NR] = [CAP_L2R] of { mtype, byte, byte };       /* GRANT(t, sn), REJ_UNAV(t), REJ_STALE(t) */
chan l2root  = [3] of { mtype, byte };                   /* FWD(t), REPORT(tail) */
chan root2l  = [3] of { mtype, byte, byte };             /* GRANT(t, sn) */

/* scratch, used only inside one atomic step: not part of the state vector */
hidden byte tk, sn, vl, hx, ax, bx, ix, jx, wx, wy, ux, uy, zx;
hidden mtype mx;

/* ================= helpers ================================================================= */

#define ROOM_L2R(n) (len(l2r[0]) + (n) <= CAP_L2R && len(l2r[1]) + (n) <= CAP_L2R)

inline drainC2R(x) { do :: nempty(c2r[x]) -> c2r[x]?_ :: empty(c2r[x]) -> break od }
inline drainR2L(x) { do :: nempty(r2l[x]) -> r2l[x]?_,_,_,_ :: empty(r2l[x]) -> break od }
inline drainL2R(x) { do :: nempty(l2r[x]) -> l2r[x]?_,_,_ :: empty(l2r[x]) -> break od }
inline drainRoot() {
  do :: nempty(l2root) -> l2root?_,_ :: empty(l2root) -> break od;
  do :: nempty(root2l) -> root2l?_,_,_ :: empty(root2l) -> break od
}

inline ackClient(tt, ii, ss) {
  /* P1 at the replica: it acks a token only with an SN where it stores that token */
  assert(rep[ii].store[ss] == tt);
  if
  :: cstat[tt] == PENDING ->
     acked[tt].by[ii] = ss + 1; lastSn[tt] = ss + 1;
     printf("MSC: R%d acks %d with SN %d\n", ii, tt, ss)
  :: else -> skip
  fi
}

/* Store vv at SN ss on replica ii (commit, catch-up copy, gap copy, fill, repair). */
inline write(ii, ss, vv) {
  assert(rep[ii].store[ss] == 0);                               /* P4 */
  for (wx : 0 .. NR-1) {
    assert(rep[wx].store[ss] == 0 || rep[wx].store[ss] == vv)   /* P2 */
  }
  if
  :: vv != FILLV ->
     for (wx : 0 .. NR-1) {
       for (wy : 0 .. NSN-1) {
         assert(wy == ss || rep[wx].store[wy] != vv)            /* P2b */
       }
     }
  :: else -> skip
  fi;
#ifdef CHECK_FAILED_NOT_STORED
  assert(vv == FILLV || cstat[vv] != FAILED);
#endif
  rep[ii].store[ss] = vv;
  printf("MSC: R%d stores %d at SN %d\n", ii, vv, ss);
  if :: ss + 1 > rep[ii].high -> rep[ii].high = ss + 1 :: else -> skip fi;
  do
  :: rep[ii].prefix < NSN && rep[ii].store[rep[ii].prefix] != 0 -> rep[ii].prefix++
  :: else -> break
  od
}

/* _order: queue an order request (flushOrders sends it) */
inline order1(ii, tt) {
  if :: rep[ii].ord[tt] == 0 -> rep[ii].ord[tt] = 1 :: else -> skip fi
}
/* the tokens of replica ii in prepare order: first FIRST(ii), then SECOND(ii) */
#define FIRST(ii)  (rep[ii].pfirst == 2 -> 2 : 1)
#define SECOND(ii) (rep[ii].pfirst == 2 -> 1 : 2)
inline orderAll(ii) {
  if :: rep[ii].prep[1] -> order1(ii, 1) :: else -> skip fi;
  if :: rep[ii].prep[2] -> order1(ii, 2) :: else -> skip fi
}
/* a token leaves _ungranted */
inline unprep(ii, tt) {
  rep[ii].prep[tt] = 0;
  if :: rep[ii].pfirst == tt -> rep[ii].pfirst = (rep[ii].prep[3 - tt] -> 3 - tt : 0) :: else -> skip fi
}

/* flush_orders: one batch of the color in flight at most, none while the color is held */
inline flushOrders(ii) {
  if
  :: !rep[ii].attached ->
     for (uy : 1 .. NT) { if :: rep[ii].ord[uy] == 1 -> rep[ii].ord[uy] = 0 :: else -> skip fi }
  :: rep[ii].attached && !rep[ii].held && rep[ii].ord[1] != 2 && rep[ii].ord[2] != 2 ->
     for (uy : 1 .. NT) {
       if :: rep[ii].ord[uy] == 1 && !rep[ii].prep[uy] -> rep[ii].ord[uy] = 0 :: else -> skip fi
     }
     /* one message, rows in prepare order */
     ax = 0; bx = 0;
     if :: rep[ii].ord[FIRST(ii)] == 1 -> ax = FIRST(ii); rep[ii].ord[ax] = 2 :: else -> skip fi;
     if :: rep[ii].ord[SECOND(ii)] == 1 -> bx = SECOND(ii); rep[ii].ord[bx] = 2 :: else -> skip fi;
     if :: ax == 0 -> ax = bx; bx = 0 :: else -> skip fi;
     if
     :: ax != 0 ->
        r2l[ii]!ORDER, ax, epoch, bx;
        printf("MSC: R%d orders %d %d (epoch %d)\n", ii, ax, bx, epoch)
     :: else -> skip
     fi
  :: else -> skip
  fi
}
#define FLUSH_ROOM(ii) (nfull(r2l[ii]))

/* _committed: remember the token, ack the client whose prepare is here */
inline committed(ii, tt, ss) {
  rep[ii].recent[tt] = ss + 1;
  rep[ii].early[tt] = 0;
  rep[ii].ord[tt] = 0;
  if
  :: rep[ii].prep[tt] -> unprep(ii, tt); ackClient(tt, ii, ss)
  :: else -> skip
  fi
}

/* _fail with FILLED: the append fails to the client, never acked */
inline failTok(ii, tt) {
  rep[ii].ord[tt] = 0;
  if
  :: rep[ii].prep[tt] ->
     unprep(ii, tt);
     printf("MSC: R%d refuses %d\n", ii, tt);
     if :: cstat[tt] == PENDING -> cstat[tt] = FAILED; printf("MSC: append %d fails\n", tt) :: else -> skip fi
  :: else -> skip
  fi
}

/* grants -> _settled, then commit_many (UnknownToken: kept early) */
inline applyGrant(ii, tt, ss) {
  if
  :: rep[ii].recent[tt] != 0 -> rep[ii].early[tt] = 0
  :: rep[ii].recent[tt] == 0 && rep[ii].sealed[ss] -> rep[ii].early[tt] = 0; failTok(ii, tt)
  :: rep[ii].recent[tt] == 0 && !rep[ii].sealed[ss] && rep[ii].store[ss] != 0 ->
     if
     :: !rep[ii].prep[tt] -> rep[ii].early[tt] = 0     /* ordered again when it comes */
     :: rep[ii].prep[tt] && rep[ii].store[ss] == tt -> committed(ii, tt, ss)
     :: rep[ii].prep[tt] && rep[ii].store[ss] != tt ->
#ifdef BUGGY_ACK_TAKEN
        committed(ii, tt, ss)
#else
        failTok(ii, tt)
#endif
     fi
  :: rep[ii].recent[tt] == 0 && !rep[ii].sealed[ss] && rep[ii].store[ss] == 0 ->
     if
     :: !rep[ii].prep[tt] ->
        rep[ii].early[tt] = ss + 1;
        printf("MSC: R%d keeps early grant %d@%d\n", ii, tt, ss)
     :: rep[ii].prep[tt] -> write(ii, ss, tt); committed(ii, tt, ss)
     fi
  fi
}

/* _order_again: a transient refusal; the entry stays prepared, the color is held */
inline orderAgain(ii, tt) {
  rep[ii].ord[tt] = 0;
  if
  :: rep[ii].prep[tt] ->
     for (uy : 1 .. NT) { if :: rep[ii].ord[uy] == 1 -> rep[ii].ord[uy] = 0 :: else -> skip fi };
     rep[ii].held = 1
  :: else -> skip
  fi
}

/* store_copy: an entry copied from a peer is stored where nothing is */
inline storeCopy(ii, ss, vv) {
  if :: vv != 0 && rep[ii].store[ss] == 0 -> write(ii, ss, vv) :: else -> skip fi
}

inline bcast(mm, tt, ss) {
  for (jx : 0 .. NR-1) {
    if
    :: lfan[jx] -> l2r[jx]!mm, tt, ss
    :: !lfan[jx] -> skip
    fi
  }
}

/* a refusal goes only to the replicas that asked (and are still attached) */
inline rejectAskers(tt) {
  for (jx : 0 .. NR-1) {
    if
    :: lfan[jx] && (lask[tt] & (1 << jx)) -> l2r[jx]!REJ_UNAV, tt, 0
    :: !(lfan[jx] && (lask[tt] & (1 << jx))) -> skip
    fi
  }
  lask[tt] = 0; linfl[tt] = 0
}

/* what the leaf tells its parent: OrderingNode.tails() */
inline leafReport() {
  if
  :: lready && rootLink && !rootKnows ->
#ifdef BUGGY_ROOT_RECOVERY
     vl = tailL;
#else
     vl = (tailL > relEnd -> tailL : relEnd);
#endif
     l2root!REPORT, vl;
     rootKnows = 1;
     printf("MSC: L reports tail %d\n", vl)
  :: else -> skip
  fi
}

/* ReplicaProtocol.view_changed on every live replica: the responsible one orders what is
   ungranted; the controller's step that changed the view runs it */
inline viewChanged() {
  printf("MSC: view %d: members %d%d readable %d%d\n", epoch, member[0], member[1], readable[0], readable[1]);
  for (zx : 0 .. NR-1) {
    if
    :: rep[zx].up && RESP(zx) -> orderAll(zx); flushOrders(zx)
    :: else -> skip
    fi
  }
}
#define VIEW_ROOM (FLUSH_ROOM(0) && FLUSH_ROOM(1))

inline abortFill() {
  fstate = 0; fby = 0; fg = 0; fval = 0; fnext = 0;
  for (jx : 0 .. NR-1) { fmem[jx] = 0 }
}

/* a replica process dies: volatile state and its streams are gone, its store (PM) stays */
inline crashReplica(x) {
  rep[x].up = 0;
  rep[x].attached = 0;
  rep[x].held = 0;
  rep[x].caughtUp = 0;
  for (ix : 1 .. NT) {
    rep[x].prep[ix] = 0; rep[x].pfirst = 0; rep[x].ord[ix] = 0; rep[x].early[ix] = 0; rep[x].recent[ix] = 0;
    lask[ix] = lask[ix] & ~(1 << x)
  }
  for (ix : 0 .. NSN-1) { rep[x].sealed[ix] = 0 }
  drainC2R(x); drainR2L(x); drainL2R(x);
  lfan[x] = 0;
  cbroken[x] = 1;
  if :: fstate != 0 && fby == x -> abortFill() :: else -> skip fi
}

/* the client writes append tt to member k if k has not acked it. A stream reopened after a
   break first carries every pending append k has not acked, in submission order
   (resend_unacked); tt is among them (the copy sent right after changes nothing: left out).
   A write to a dead replica is lost and its stream stays broken. */
inline clientSend(k, tt) {
  if
  :: cstat[tt] != PENDING -> skip
  :: cstat[tt] == PENDING && member[k] && rep[k].up && cbroken[k] ->
     cbroken[k] = 0;
     for (ux : 1 .. NT) {
       if :: cstat[ux] == PENDING && acked[ux].by[k] == 0 -> c2r[k]!ux :: else -> skip fi
     }
  :: cstat[tt] == PENDING && member[k] && rep[k].up && !cbroken[k] && acked[tt].by[k] == 0 -> c2r[k]!tt
  :: else -> skip
  fi
}

#define CAN_DONE(tt) (cstat[tt] == PENDING && lastSn[tt] != 0 && \
                      (!readable[0] || acked[tt].by[0] != 0) && (!readable[1] || acked[tt].by[1] != 0))

/* repaired(): the peer's entry at the grant's SN goes in under the grant's token */
inline repair(ii) {
  sn = rep[ii].early[tk] - 1;
  vl = rep[PEER(ii)].store[sn];
  rep[ii].early[tk] = 0;
  printf("MSC: R%d repairs %d@%d from R%d (%d)\n", ii, tk, sn, PEER(ii), vl);
  if
  :: rep[ii].sealed[sn] -> skip
  :: !rep[ii].sealed[sn] && rep[ii].store[sn] == 0 -> write(ii, sn, vl); rep[ii].recent[tk] = sn + 1
  :: !rep[ii].sealed[sn] && rep[ii].store[sn] != 0 && rep[ii].store[sn] == vl -> rep[ii].recent[tk] = sn + 1
  :: !rep[ii].sealed[sn] && rep[ii].store[sn] != 0 && rep[ii].store[sn] != vl -> skip
  fi
}

/* ================= processes =============================================================== */

inline complete() {
       cstat[tk] = DONE;
       doneSn[tk] = lastSn[tk];
       sn = lastSn[tk] - 1;
       printf("MSC: C append %d done at SN %d\n", tk, sn);
       for (ix : 0 .. NR-1) {
         assert(!readable[ix] || rep[ix].store[sn] == tk)                  /* P1 */
       }
       assert(cstat[1] != DONE || cstat[2] != DONE || doneSn[1] < doneSn[2])   /* P3 */
}


proctype Client() {
end:
  do
  :: d_step { nextTok <= NT && len(c2r[0]) + NT + 1 <= CAP_C2R && len(c2r[1]) + NT + 1 <= CAP_C2R ->
       tk = nextTok;
       cstat[tk] = PENDING;
       nextTok++;
       printf("MSC: C submits %d\n", tk);
       clientSend(0, tk);
       clientSend(1, tk); skip
     }
  /* a resend (_resend_due, view_changed): to a member that has not acked a pending append;
     a copy still on its way makes another one pointless, so only when that stream is idle */
#ifndef NO_RESEND
  :: d_step { member[0] && rep[0].up && empty(c2r[0]) &&
              ((cstat[1] == PENDING && acked[1].by[0] == 0) || (cstat[2] == PENDING && acked[2].by[0] == 0)) ->
       printf("MSC: C re-sends to R0\n");
       clientSend(0, 1); clientSend(0, 2); skip }
  :: d_step { member[1] && rep[1].up && empty(c2r[1]) &&
              ((cstat[1] == PENDING && acked[1].by[1] == 0) || (cstat[2] == PENDING && acked[2].by[1] == 0)) ->
       printf("MSC: C re-sends to R1\n");
       clientSend(1, 1); clientSend(1, 2); skip }
#endif
  /* an append completes once every readable member acked it */
  :: d_step { CAN_DONE(1) -> tk = 1; complete(); skip }
  :: d_step { CAN_DONE(2) -> tk = 2; complete(); skip }
  od
}

proctype Replica(byte i) {
end:
  do
  /* prepare: a client's entry */
  :: d_step { rep[i].up && nempty(c2r[i]) && FLUSH_ROOM(i) ->
       c2r[i]?tk;
       printf("MSC: R%d prepares %d\n", i, tk);
       if
       :: rep[i].recent[tk] != 0 -> ackClient(tk, i, rep[i].recent[tk] - 1)
       :: rep[i].recent[tk] == 0 && rep[i].prep[tk] -> skip
       :: rep[i].recent[tk] == 0 && !rep[i].prep[tk] ->
          rep[i].prep[tk] = 1;
          if :: rep[i].pfirst == 0 -> rep[i].pfirst = tk :: else -> skip fi;
          if
          :: rep[i].early[tk] != 0 -> sn = rep[i].early[tk] - 1; rep[i].early[tk] = 0; applyGrant(i, tk, sn)
          :: rep[i].early[tk] == 0 && RESP(i) -> order1(i, tk)
          :: else -> skip
          fi
       fi;
       flushOrders(i); skip
     }
  /* a message from the leaf: a grant, or a refusal of this replica's request */
  :: d_step { rep[i].up && nempty(l2r[i]) && FLUSH_ROOM(i) ->
       l2r[i]?mx, tk, sn;
       printf("MSC: R%d gets %e %d %d\n", i, mx, tk, sn);
       if
       :: mx == GRANT -> applyGrant(i, tk, sn)
       :: mx == REJ_UNAV || mx == REJ_STALE -> orderAgain(i, tk)
       fi;
       flushOrders(i); skip
     }
  /* (re)attach to the leaf: hello, then leaf_attached orders everything ungranted */
  :: d_step { rep[i].up && !rep[i].attached && empty(r2l[i]) ->
#if defined(OLD_HELLO)
       r2l[i]!HELLO, rep[i].high, rep[i].recent[1], rep[i].recent[2];
#elif defined(AS_CODED_HELLO)
       r2l[i]!HELLO, rep[i].high, (rep[i].recent[1] != 0 -> rep[i].recent[1] : rep[i].early[1]),
                                  (rep[i].recent[2] != 0 -> rep[i].recent[2] : rep[i].early[2]);
#else
       /* every grant it knows: the token of every entry it stores (tokens persisted with the
          entries and copied along; a restart loses _recent), else its early grant */
       ax = rep[i].early[1]; bx = rep[i].early[2];
       for (ix : 0 .. NSN - 1) {
         if :: rep[i].store[ix] == 1 -> ax = ix + 1 :: rep[i].store[ix] == 2 -> bx = ix + 1 :: else -> skip fi
       }
       r2l[i]!HELLO, rep[i].high, ax, bx;
#endif
       rep[i].attached = 1;
       printf("MSC: R%d attaches (high %d)\n", i, rep[i].high);
       orderAll(i);
       flushOrders(i); skip
     }
  /* tick: _release_held, once the color's batch is answered */
  :: d_step { rep[i].up && rep[i].held && rep[i].ord[1] != 2 && rep[i].ord[2] != 2 && FLUSH_ROOM(i) ->
       rep[i].held = 0;
       for (ix : 1 .. NT) { if :: rep[i].ord[ix] == 1 -> rep[i].ord[ix] = 0 :: else -> skip fi }
       if :: RESP(i) -> orderAll(i) :: else -> skip fi;
       flushOrders(i); skip
     }
  /* tick: an ungranted entry is ordered again (responsible after 1 s, any member after 2 s) */
  :: d_step { rep[i].up && rep[i].attached && FLUSH_ROOM(i) &&
              ((rep[i].prep[1] && rep[i].ord[1] == 0) || (rep[i].prep[2] && rep[i].ord[2] == 0)) ->
       orderAll(i);
       flushOrders(i); skip
     }
  /* tick: _repair a grant whose prepare never came, from a peer that serves reads; the
     peer's entry at that SN, whatever it is, is committed under the grant's token */
  :: d_step { rep[i].up && SERVES(PEER(i)) && rep[i].early[1] != 0 &&
              rep[PEER(i)].store[rep[i].early[1] - 1] != 0 -> tk = 1; repair(i); skip }
  :: d_step { rep[i].up && SERVES(PEER(i)) && rep[i].early[2] != 0 &&
              rep[PEER(i)].store[rep[i].early[2] - 1] != 0 -> tk = 2; repair(i); skip }
  /* tick: a gap below committed SNs: copy what a readable peer has there (_copy_gap) */
  :: d_step { rep[i].up && SELFREAD(i) && rep[i].prefix < rep[i].high && SERVES(PEER(i)) &&
              rep[PEER(i)].store[rep[i].prefix] != 0 ->
       printf("MSC: R%d copies its gap from R%d\n", i, PEER(i));
       for (ix : rep[i].prefix .. rep[i].high - 1) { storeCopy(i, ix, rep[PEER(i)].store[ix]) }; skip
     }
  /* tick: the gap stayed: the responsible replica seals it at every member (phase 1) */
  :: d_step { rep[i].up && SELFREAD(i) && RESP(i) && rep[i].prefix < rep[i].high &&
              fstate == 0 && fills < MAXFILL ->
       fills++;
       fstate = 1; fby = i; fg = rep[i].prefix; fval = 0; fnext = 0;
       for (ix : 0 .. NR-1) { fmem[ix] = member[ix] }
       printf("MSC: R%d seals SN %d\n", i, fg); skip
     }
  /* the seal reaches the next member: it refuses grants there from now on, drops its early
     grants there, answers what it stores there; one that does not answer fails the seal */
  :: d_step { rep[i].up && fstate == 1 && fby == i && fnext < NR ->
       if
       :: !fmem[fnext] -> fnext++
       :: fmem[fnext] && !rep[fnext].up -> printf("MSC: seal fails\n"); abortFill()
       :: fmem[fnext] && rep[fnext].up ->
          rep[fnext].sealed[fg] = 1;
          for (ix : 1 .. NT) {
            if :: rep[fnext].early[ix] == fg + 1 -> rep[fnext].early[ix] = 0 :: else -> skip fi
          }
          vl = rep[fnext].store[fg];
          printf("MSC: R%d sealed SN %d, has %d\n", fnext, fg, vl);
          if
          :: vl != 0 -> assert(fval == 0 || fval == vl); fval = vl      /* P2 */
          :: else -> skip
          fi;
          fnext++
       fi; skip
     }
  /* sealed: every member answered; the fill goes to the members of the view now (phase 2),
     unless one of them was not sealed: then a later tick seals again */
  :: d_step { rep[i].up && fstate == 1 && fby == i && fnext == NR ->
       if
#ifndef OLD_FILL
       :: (member[0] && !fmem[0]) || (member[1] && !fmem[1]) ->
          printf("MSC: members changed since the seal\n"); abortFill()
#endif
       :: else ->
          if :: fval == 0 -> fval = FILLV :: else -> skip fi;
          fstate = 2; fnext = 0;
          for (ix : 0 .. NR-1) { fmem[ix] = member[ix] }
          printf("MSC: fill SN %d with %d\n", fg, fval)
       fi; skip
     }
  /* apply_fill at the next member (a dead one misses it): store it where nothing is, unseal */
  :: d_step { rep[i].up && fstate == 2 && fby == i ->
       if
       :: fnext < NR && fmem[fnext] && rep[fnext].up ->
          storeCopy(fnext, fg, fval);
          /* seals below the prefix have nothing left to guard */
          for (ix : 0 .. NSN - 1) {
            if :: ix < rep[fnext].prefix -> rep[fnext].sealed[ix] = 0 :: else -> skip fi
          }
          fnext++
       :: fnext < NR && !(fmem[fnext] && rep[fnext].up) -> fnext++
       :: fnext == NR -> abortFill()
       fi; skip
     }
  /* catch-up (_maybe_catch_up, the adapter's _catch_up): a member that is not readable copies
     what it lacks from a peer that says it is readable itself, from its own prefix up to the
     peer's high (one range read: the log is small), then reports caught_up_epoch */
  :: d_step { rep[i].up && member[i] && !SELFREAD(i) && rep[i].caughtUp < epoch + 1 &&
              SERVES(PEER(i)) ->
       printf("MSC: R%d catches up from R%d\n", i, PEER(i));
       for (ix : rep[i].prefix .. NSN - 1) {
         if :: ix < rep[PEER(i)].high -> storeCopy(i, ix, rep[PEER(i)].store[ix]) :: else -> skip fi
       }
       rep[i].caughtUp = epoch + 1; skip
     }
  od
}

/* _order: one row of a replica's order message */
inline leafOrder(tt) {
  if
  :: lrecent[tt] != 0 -> bcast(GRANT, tt, lrecent[tt] - 1)
  :: lrecent[tt] == 0 && linfl[tt] -> lask[tt] = lask[tt] | (1 << zx)
  :: lrecent[tt] == 0 && !linfl[tt] && rootLink ->
     linfl[tt] = 1; lask[tt] = 1 << zx; l2root!FWD, tt
  :: lrecent[tt] == 0 && !linfl[tt] && !rootLink ->
     lask[tt] = 1 << zx; rejectAskers(tt)
  fi
}

inline leafRecv() {
  r2l[zx]?<mx, ax, bx, hx>;
  if
  :: mx == HELLO ->
     r2l[zx]?mx, ax, bx, hx;
     if :: ax > tailL -> tailL = ax :: else -> skip fi;
     if :: bx != 0 -> lrecent[1] = bx :: else -> skip fi;
     if :: hx != 0 -> lrecent[2] = hx :: else -> skip fi;
#if !defined(AS_CODED_HELLO) && !defined(OLD_HELLO)
     /* a grant it reports takes its SN: count it in the tail the root will hear */
     if :: bx > tailL -> tailL = bx :: else -> skip fi;
     if :: hx > tailL -> tailL = hx :: else -> skip fi;
#endif
     reported[zx] = 1; lfan[zx] = 1;
#ifndef AS_CODED_ATTACH
     /* a grant relayed before this stream was on the fanout never reached it: send the
        recent grants at or above its tail again, in SN order */
     for (vl : ax .. NSN - 1) {
       if :: lrecent[1] == vl + 1 -> l2r[zx]!GRANT, 1, vl :: else -> skip fi;
       if :: lrecent[2] == vl + 1 -> l2r[zx]!GRANT, 2, vl :: else -> skip fi
     }
#endif
     skip
  :: mx == ORDER && bx < epoch ->
     r2l[zx]?mx, ax, bx, hx;
     l2r[zx]!REJ_STALE, ax, 0;
     if :: hx != 0 -> l2r[zx]!REJ_STALE, hx, 0 :: else -> skip fi
  :: mx == ORDER && bx >= epoch && lready ->
     r2l[zx]?mx, ax, bx, hx;
     leafOrder(ax);
     if :: hx != 0 -> leafOrder(hx) :: else -> skip fi
  :: else -> skip                                   /* parked: the leaf is not ready */
  fi
}

proctype Leaf() {
end:
  do
  /* a message from replica x: hello, or an order request (refused if its epoch is old,
     parked while the leaf is not ready, answered from _recent_grants, or sent up) */
  :: d_step { nempty(r2l[0]) && ROOM_L2R(2) && len(l2root) + 2 <= 3 -> zx = 0; leafRecv(); skip }
  :: d_step { nempty(r2l[1]) && ROOM_L2R(2) && len(l2root) + 2 <= 3 -> zx = 1; leafRecv(); skip }
  /* a grant from the root: remember it, relay it to every attached replica */
  :: d_step { nempty(root2l) && ROOM_L2R(1) ->
       root2l?mx, tk, sn;
       lask[tk] = 0; linfl[tk] = 0;
       lrecent[tk] = sn + 1;
       if :: sn + 1 > relEnd -> relEnd = sn + 1 :: else -> skip fi;
       printf("MSC: L relays %d@%d\n", tk, sn);
       bcast(GRANT, tk, sn); skip
     }
  /* _check_shard: every member reported; then the root hears about the shard */
  :: d_step { !lready && (!member[0] || reported[0]) && (!member[1] || reported[1]) ->
       lready = 1;
       printf("MSC: L ready\n");
       leafReport(); skip
     }
  /* the link to the root is back: parent_hello */
  :: d_step { !rootLink -> rootLink = 1; rootKnows = 0; leafReport(); skip }
  /* crash + restart: everything it knew is gone, its streams broke (leaf_lost at replicas) */
  :: d_step { lcrashes < MAXLC ->
       lcrashes++;
       printf("MSC: L crashes\n");
       lready = 0; tailL = 0; relEnd = 0;
       for (ix : 0 .. NR-1) {
         reported[ix] = 0; lfan[ix] = 0;
         drainR2L(ix); drainL2R(ix);
         rep[ix].attached = 0; rep[ix].held = 0;
         for (tk : 1 .. NT) { rep[ix].ord[tk] = 0 }
       }
       for (tk : 1 .. NT) { lrecent[tk] = 0; lask[tk] = 0; linfl[tk] = 0 }
       drainRoot();
       rootLink = 1; rootKnows = 0; skip
     }
  od
}

proctype Root() {
end:
  do
  :: d_step { l2root?[REPORT,_] ->
       l2root?mx, vl;
       if :: vl > rctr -> rctr = vl :: else -> skip fi;
       rready = 1;
       printf("MSC: root learns %d, counter %d\n", vl, rctr); skip
     }
  /* OrderingNode.assign; requests wait while the root is not ready */
  :: d_step { rready && l2root?[FWD,_] && rctr < NSN && nfull(root2l) ->
       l2root?mx, tk;
       /* P0: an SN some replica stores, holds early or has a grant for on the way is never
          handed out again */
#ifndef NO_P0
       for (ix : 0 .. NR-1) {
         assert(rep[ix].store[rctr] == 0 && rep[ix].early[1] != rctr + 1 && rep[ix].early[2] != rctr + 1);
         assert(!(l2r[ix]??[GRANT,1,eval(rctr)]) && !(l2r[ix]??[GRANT,2,eval(rctr)]))
       }
#endif
       root2l!GRANT, tk, rctr;
       printf("MSC: root grants %d@%d\n", tk, rctr);
       rctr++; skip
     }
  /* crash + restart: the counter is gone; the leaf's link breaks, it fails what it forwarded
     (parent_lost -> fail_in_flight: a refusal to the replicas that asked) */
  :: d_step { rcrashes < MAXRC && ROOM_L2R(NT) ->
       rcrashes++;
       printf("MSC: root crashes\n");
       rctr = 0; rready = 0;
       drainRoot();
       rootLink = 0; rootKnows = 0;
       for (tk : 1 .. NT) { if :: linfl[tk] -> rejectAskers(tk) :: else -> skip fi }; skip
     }
  od
}

proctype Controller() {
end:
  do
  /* SIGKILL a replica; the launcher restarts it (a new incarnation) */
  :: d_step { repcrashes < MAXREP && (CRASHABLE & 1) && rep[0].up -> repcrashes++; printf("MSC: R0 crashes\n"); crashReplica(0); skip }
  :: d_step { repcrashes < MAXREP && (CRASHABLE & 2) && rep[1].up -> repcrashes++; printf("MSC: R1 crashes\n"); crashReplica(1); skip }
  :: d_step { !rep[0].up && RESTART_OK(0) -> rep[0].up = 1; rep[0].restarted = 1; printf("MSC: R0 restarts\n"); skip }
  :: d_step { !rep[1].up && RESTART_OK(1) -> rep[1].up = 1; rep[1].restarted = 1; printf("MSC: R1 restarts\n"); skip }
  /* a new incarnation: recorded; not readable until caught up if another readable member
     kept running */
  :: d_step { rep[0].up && rep[0].restarted && VIEW_ROOM ->
       rep[0].restarted = 0; epoch++;
       if :: readable[0] && readable[1] && !rep[1].restarted -> readable[0] = 0 :: else -> skip fi;
       viewChanged(); skip }
  :: d_step { rep[1].up && rep[1].restarted && VIEW_ROOM ->
       rep[1].restarted = 0; epoch++;
       if :: readable[1] && readable[0] && !rep[0].restarted -> readable[1] = 0 :: else -> skip fi;
       viewChanged(); skip }
  /* silent for failure_timeout_ms: out of the view, unless the last readable member */
  :: d_step { removals < MAXRM && !rep[0].up && member[0] && (!readable[0] || readable[1]) && VIEW_ROOM ->
       removals++; epoch++; member[0] = 0; readable[0] = 0; viewChanged(); skip }
  :: d_step { removals < MAXRM && !rep[1].up && member[1] && (!readable[1] || readable[0]) && VIEW_ROOM ->
       removals++; epoch++; member[1] = 0; readable[1] = 0; viewChanged(); skip }
  /* answers and is attached: a member, not readable */
  :: d_step { !member[0] && rep[0].up && rep[0].attached && VIEW_ROOM -> epoch++; member[0] = 1; viewChanged(); skip }
  :: d_step { !member[1] && rep[1].up && rep[1].attached && VIEW_ROOM -> epoch++; member[1] = 1; viewChanged(); skip }
  /* caught up at the current epoch: readable */
  :: d_step { member[0] && !readable[0] && rep[0].up && rep[0].caughtUp == epoch + 1 && VIEW_ROOM ->
       epoch++; readable[0] = 1; viewChanged(); skip }
  :: d_step { member[1] && !readable[1] && rep[1].up && rep[1].caughtUp == epoch + 1 && VIEW_ROOM ->
       epoch++; readable[1] = 1; viewChanged(); skip }
  od
}

#ifdef CHECK_QUIESCENT
/* Once nothing can move any more (the faults are used up and every message is handled):
   every append completed or failed, and no readable replica is left with a hole. */
active proctype Quiescent() {
  timeout ->
  assert(cstat[1] == DONE || cstat[1] == FAILED);
  assert(cstat[2] == DONE || cstat[2] == FAILED);
  assert(!SELFREAD(0) || rep[0].prefix == rep[0].high);
  assert(!SELFREAD(1) || rep[1].prefix == rep[1].high)
}
#endif

init {
  atomic {
    for (ix : 0 .. NR-1) {
      member[ix] = 1; readable[ix] = 1; reported[ix] = 1; lfan[ix] = 1;
      rep[ix].up = 1; rep[ix].attached = 1
    }
    run Client();
    run Replica(0);
    run Replica(1);
    run Leaf();
    run Root();
    run Controller()
  }
}
