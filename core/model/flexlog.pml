/*
 * FlexLog: ordering + replication + view change of ONE root-owned color, in Promela.
 *
 * What maps to what (see README.md next to this file):
 *   proctype Client     core/client.py        _ShardWriter (submit, _resend, on_acks, view_changed)
 *   proctype Replica(i) core/replica.py       ReplicaServer (_prepare_ops, _apply_grants,
 *                                             _already_stored, _leaf_link, _sweep, _repair,
 *                                             _catch_up) + the hole fill (SEAL / FILL)
 *   proctype Leaf       core/sequencer.py     SequencerServer of the leaf (_replica_hello,
 *                                             _check_shard, _order, _grant_reply, _parent_link)
 *                       core/ordering.py      OrderingNode.submit / on_grant / fail_in_flight
 *   proctype Root       core/sequencer.py     the root node (_read_child, _shard_reported),
 *                       core/ordering.py      OrderingNode.assign
 *   proctype Controller core/controller.py    Controller.decide (remove / demote / re-add /
 *                                             make readable), core/view.py ShardView
 *
 * Variants (spin -D...):
 *   BUGGY_ROOT_RECOVERY  the leaf reports to a restarted root only the tails its replicas
 *                        reported when they attached (the bug being fixed): SNs are reused.
 *   BUGGY_ACK_TAKEN      a replica that gets a grant for an SN it already stores with a
 *                        DIFFERENT entry acks the client with that SN (the old _already_stored).
 *   AS_CODED_STALE       a replica does not re-send its outstanding order requests when the
 *                        epoch changes (what core/replica.py does today); see README.md.
 *   CHECK_FAILED_NOT_STORED  also assert that an append the client saw fail is never stored.
 *
 * Fault budget (override with -D): MAXRC root crashes, MAXLC leaf crashes, MAXREP replica
 * crashes, MAXRM replica removals (a crashed replica leaves the view, then rejoins).
 */

#define NR    2            /* replicas of the shard (the RESP/PEER macros assume 2) */
#define NT    2            /* appends of the client: tokens 1..NT, payload = token */
#ifndef NSN
#define NSN   4            /* SNs 0..NSN-1; the root orders nothing beyond (bound) */
#endif
#define FILLV 3            /* payload of a fill marker (no token has it) */

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
#ifndef MAXRESEND
#define MAXRESEND 2        /* client re-sends (same token) */
#endif
#ifndef MAXFILL
#define MAXFILL 2          /* hole-fill attempts */
#endif

#define IDLE    0
#define PENDING 1
#define DONE    2
#define FAILED  3

#define CAP_C2R 3
#define CAP_R2L 4
#define CAP_L2R 4

mtype = { ORDER, HELLO, GRANT, REJ_UNAV, REJ_STALE, FWD, REPORT };

/* ---- the view (core/view.py). Everyone sees a new view at once: the controller's change
   and every live replica's reaction to it (_view_changed) are one step. */
byte epoch;
bool member[NR];
bool readable[NR];

#define PEER(x) (1 - (x))
/* ShardView.responsible(color 0): the first readable member, else the first member */
#define RESP(x) ((readable[x] && ((x) == 0 || !readable[0])) || \
                 (!readable[0] && !readable[1] && member[x] && ((x) == 0 || !member[0])))

/* ---- replicas --------------------------------------------------------------------------- */
typedef Rep {
  byte store[NSN];      /* durable (PM): 0 nothing, 1..NT that append, FILLV fill marker */
  bool sealed[NSN];     /* durable: a grant for a sealed SN is refused */
  byte prefix;          /* derived from store: every SN below is stored (what readers see) */
  byte high;            /* derived from store: one past the highest stored SN (its "tail") */
  bool up;
  bool restarted;       /* a new incarnation the view does not know yet */
  bool attached;        /* its leaf stream is up (hello sent) */
  bool prep[NT+1];      /* prepared, not committed: _ungranted (volatile) */
  bool ordering[NT+1];  /* order request sent, not answered: _ordering (volatile) */
  byte early[NT+1];     /* sn+1 of a grant that outran the prepare: _early (volatile) */
  byte recent[NT+1];    /* sn+1 it committed the token at: _recent (volatile) */
  byte caughtUp;        /* caught_up_epoch + 1, 0 = none */
  byte ctarget;         /* catch-up in progress: copy SNs cpos .. ctarget-2 from csrc */
  byte cpos;
  byte csrc;
}
Rep rep[NR];

/* ---- client ------------------------------------------------------------------------------ */
typedef AckRow { byte by[NR] }   /* sn+1 each replica acked the token with */
AckRow acked[NT+1];
byte cstat[NT+1];
byte lastSn[NT+1];               /* sn+1 of the last ack (the client resolves with it) */
byte doneSn[NT+1];               /* sn+1 the append completed with */
byte nextTok = 1;
byte resends;

/* ---- leaf sequencer ---------------------------------------------------------------------- */
bool lready = true;
bool reported[NR];               /* _reported */
bool lfan[NR];                   /* replicas on the shard's fanout (hello received) */
byte tailL;                      /* tails learned from hellos (node.counters for this color) */
byte relEnd;                     /* highest end of a grant relayed from the root */
byte lrecent[NT+1];              /* _recent_grants: sn+1 */
bool linfl[NT+1];                /* _in_flight */
bool rootLink = true;            /* its stream to the root is up */
bool rootKnows = true;           /* it reported its tails on that stream */
byte lcrashes;

/* ---- root sequencer ---------------------------------------------------------------------- */
bool rready = true;
byte rctr;
byte rcrashes;

/* ---- controller -------------------------------------------------------------------------- */
byte repcrashes;
byte removals;

/* ---- hole fill (run by the responsible replica) ------------------------------------------ */
byte fstate;                     /* 0 idle, 1 sealing, 2 filling */
byte fby, fg, fval, fepoch, fills;
bool fin[NR];                    /* the members it sealed */
bool sealAsk[NR], sealGot[NR];
byte sealVal[NR];
bool fillAsk[NR];

/* ---- streams: FIFO, emptied when either end crashes -------------------------------------- */
chan c2r[NR] = [CAP_C2R] of { byte };                    /* client -> replica: prepare(token) */
chan r2l[NR] = [CAP_R2L] of { mtype, byte, byte, byte }; /* HELLO(high, rec1, rec2) / ORDER(t, epoch) */
chan l2r[NR] = [CAP_L2R] of { mtype, byte, byte };       /* GRANT(t, sn) / REJ_UNAV(t) / REJ_STALE(t) */
chan l2root  = [3] of { mtype, byte };                   /* FWD(t) / REPORT(tail) */
chan root2l  = [3] of { mtype, byte, byte };             /* GRANT(t, sn) */

/* scratch, used only inside one atomic step: not part of the state */
hidden byte tk, sn, vl, hx, ax, bx, rx, ix, jx, wx, wy, ux, uy;
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
  if
  :: cstat[tt] == PENDING -> acked[tt].by[ii] = ss + 1; lastSn[tt] = ss + 1;
     printf("MSC: R%d acks append %d with SN %d\n", ii, tt, ss)
  :: else -> skip
  fi
}

inline failClient(tt) {
  if
  :: cstat[tt] == PENDING -> cstat[tt] = FAILED; printf("MSC: append %d fails\n", tt)
  :: else -> skip
  fi
}

/* Store vv at SN ss on replica ii, checking the safety properties that a store can break. */
inline write(ii, ss, vv) {
  /* P4: stored entries are never replaced (so every replica's visible tail only grows) */
  assert(rep[ii].store[ss] == 0);
  /* P2: no SN holds two different payloads (entry vs entry, entry vs fill) on two replicas */
  for (wx : 0 .. NR-1) {
    assert(rep[wx].store[ss] == 0 || rep[wx].store[ss] == vv)
  }
  /* P2b: one entry never gets two SNs */
  if
  :: vv != FILLV ->
     for (wx : 0 .. NR-1) {
       for (wy : 0 .. NSN-1) {
         assert(wy == ss || rep[wx].store[wy] != vv)
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

/* ReplicaServer._order: one order request to the leaf (kept ungranted if the link is down) */
inline orderTok(ii, tt) {
  if
  :: rep[ii].attached && !rep[ii].ordering[tt] && nfull(r2l[ii]) ->
     rep[ii].ordering[tt] = 1;
     r2l[ii]!ORDER, tt, epoch, 0;
     printf("MSC: R%d orders %d (epoch %d)\n", ii, tt, epoch)
  :: !rep[ii].attached || rep[ii].ordering[tt] || full(r2l[ii]) -> skip
  fi
}

/* the entry is committed here: remember the token, ack the client if its prepare is here */
inline committed(ii, tt, ss) {
  rep[ii].recent[tt] = ss + 1;
  rep[ii].early[tt] = 0;
  rep[ii].ordering[tt] = 0;
  if
  :: rep[ii].prep[tt] -> rep[ii].prep[tt] = 0; ackClient(tt, ii, ss)
  :: else -> skip
  fi
}

/* a grant this replica must not store: the append fails to the client, never acked */
inline refuse(ii, tt) {
  printf("MSC: R%d refuses %d\n", ii, tt);
  rep[ii].early[tt] = 0;
  rep[ii].ordering[tt] = 0;
  if
  :: rep[ii].prep[tt] -> rep[ii].prep[tt] = 0; failClient(tt)
  :: else -> skip
  fi
}

/* _apply_grants / _already_stored for one grant (t, sn) */
inline applyGrant(ii, tt, ss) {
  if
  :: rep[ii].recent[tt] != 0 -> rep[ii].early[tt] = 0        /* committed here already */
  :: rep[ii].recent[tt] == 0 && rep[ii].store[ss] == tt ->   /* copied here (catch-up, fill) */
     committed(ii, tt, ss)
  :: rep[ii].recent[tt] == 0 && rep[ii].store[ss] != 0 && rep[ii].store[ss] != tt ->
#ifdef BUGGY_ACK_TAKEN
     committed(ii, tt, ss)                                   /* acks with an SN it does not hold */
#else
     refuse(ii, tt)
#endif
  :: rep[ii].recent[tt] == 0 && rep[ii].store[ss] == 0 && rep[ii].sealed[ss] ->
     refuse(ii, tt)
  :: rep[ii].recent[tt] == 0 && rep[ii].store[ss] == 0 && !rep[ii].sealed[ss] && !rep[ii].prep[tt] ->
     rep[ii].early[tt] = ss + 1;                             /* outran the prepare */
     printf("MSC: R%d keeps early grant %d@%d\n", ii, tt, ss)
  :: rep[ii].recent[tt] == 0 && rep[ii].store[ss] == 0 && !rep[ii].sealed[ss] && rep[ii].prep[tt] ->
     write(ii, ss, tt);
     committed(ii, tt, ss)
  fi
}

/* the leaf writes one message to every replica on the shard's fanout */
inline bcast(mm, tt, ss) {
  for (jx : 0 .. NR-1) {
    if
    :: lfan[jx] -> l2r[jx]!mm, tt, ss
    :: !lfan[jx] -> skip
    fi
  }
}

/* what the leaf tells its parent about this color (the fix is the max with relEnd) */
inline leafReport() {
  if
  :: lready && rootLink && !rootKnows ->
#ifdef BUGGY_ROOT_RECOVERY
     vl = tailL;
#else
     vl = (tailL > relEnd -> tailL : relEnd);
#endif
     l2root!REPORT, vl;
     printf("MSC: L reports tail %d to the root\n", vl);
     rootKnows = 1
  :: else -> skip
  fi
}

/* _view_changed on every live replica, in the step that changed the view: the responsible
   replica orders what is still ungranted */
inline viewChanged() {
  printf("MSC: view %d: members %d%d readable %d%d\n", epoch, member[0], member[1], readable[0], readable[1]);
  for (ux : 0 .. NR-1) {
    if
    :: rep[ux].up ->
#ifndef AS_CODED_STALE
       /* its order requests in flight carry the old epoch and will be refused: send them
          again with the new one, in prepare order, so that none overtakes an older one */
       for (uy : 1 .. NT) { rep[ux].ordering[uy] = 0 }
#endif
       if
       :: RESP(ux) ->
          for (uy : 1 .. NT) {
            if :: rep[ux].prep[uy] && rep[ux].early[uy] == 0 -> orderTok(ux, uy) :: else -> skip fi
          }
       :: else -> skip
       fi
    :: else -> skip
    fi
  }
}

inline abortFill() {
  fstate = 0;
  for (jx : 0 .. NR-1) { fin[jx] = 0; sealAsk[jx] = 0; sealGot[jx] = 0; sealVal[jx] = 0; fillAsk[jx] = 0 }
  fby = 0; fg = 0; fval = 0; fepoch = 0
}

/* a replica process dies: volatile state and its streams are gone, its store (PM) stays */
inline crashReplica(x) {
  rep[x].up = 0;
  rep[x].attached = 0;
  rep[x].caughtUp = 0;
  rep[x].ctarget = 0; rep[x].cpos = 0; rep[x].csrc = 0;
  for (ix : 1 .. NT) {
    rep[x].prep[ix] = 0; rep[x].ordering[ix] = 0; rep[x].early[ix] = 0; rep[x].recent[ix] = 0
  }
  drainC2R(x); drainR2L(x); drainL2R(x);
  lfan[x] = 0;
  if
  :: fstate != 0 && fby == x -> abortFill()
  :: fstate != 0 && fby != x -> sealAsk[x] = 0; fillAsk[x] = 0   /* lost in its dead stream */
  :: else -> skip
  fi
}

/* ================= processes =============================================================== */

proctype Client() {
end:
  do
  /* submit the next append (pipelined: it does not wait for the previous one) */
  :: atomic { nextTok <= NT && len(c2r[0]) < CAP_C2R && len(c2r[1]) < CAP_C2R ->
       tk = nextTok;
       for (ix : 0 .. NR-1) {
         if :: member[ix] && rep[ix].up -> c2r[ix]!tk :: else -> skip fi
       }
       cstat[tk] = PENDING;
       printf("MSC: C submits %d\n", tk);
       nextTok++
     }
  /* re-send (same tokens, submission order) to a member that has not acked them:
     retry tick, retriable error, or a view change (_resend) */
  :: atomic { resends < MAXRESEND && member[0] && rep[0].up && len(c2r[0]) + NT <= CAP_C2R &&
              ((cstat[1] == PENDING && acked[1].by[0] == 0) || (cstat[2] == PENDING && acked[2].by[0] == 0)) ->
       resends++;
       printf("MSC: C re-sends to R0\n");
       for (tk : 1 .. NT) {
         if :: cstat[tk] == PENDING && acked[tk].by[0] == 0 -> c2r[0]!tk :: else -> skip fi
       }
     }
  :: atomic { resends < MAXRESEND && member[1] && rep[1].up && len(c2r[1]) + NT <= CAP_C2R &&
              ((cstat[1] == PENDING && acked[1].by[1] == 0) || (cstat[2] == PENDING && acked[2].by[1] == 0)) ->
       resends++;
       printf("MSC: C re-sends to R1\n");
       for (tk : 1 .. NT) {
         if :: cstat[tk] == PENDING && acked[tk].by[1] == 0 -> c2r[1]!tk :: else -> skip fi
       }
     }
  /* complete: every readable member acked (on_acks / view_changed) */
  :: atomic { (cstat[1] == PENDING && lastSn[1] != 0 &&
               (!readable[0] || acked[1].by[0] != 0) && (!readable[1] || acked[1].by[1] != 0)) ||
              (cstat[2] == PENDING && lastSn[2] != 0 &&
               (!readable[0] || acked[2].by[0] != 0) && (!readable[1] || acked[2].by[1] != 0)) ->
       if
       :: cstat[1] == PENDING && lastSn[1] != 0 &&
          (!readable[0] || acked[1].by[0] != 0) && (!readable[1] || acked[1].by[1] != 0) -> tk = 1
       :: cstat[2] == PENDING && lastSn[2] != 0 &&
          (!readable[0] || acked[2].by[0] != 0) && (!readable[1] || acked[2].by[1] != 0) -> tk = 2
       fi;
       cstat[tk] = DONE;
       printf("MSC: C append %d done at SN %d\n", tk, lastSn[tk] - 1);
       doneSn[tk] = lastSn[tk];
       sn = lastSn[tk] - 1;
       /* P1: an acknowledged append is stored at its SN with its payload on every readable replica */
       for (ix : 0 .. NR-1) {
         assert(!readable[ix] || rep[ix].store[sn] == tk)
       }
       /* P3: one client's appends to one color keep submission order */
       assert(cstat[1] != DONE || cstat[2] != DONE || doneSn[1] < doneSn[2])
     }
  od
}

proctype Replica(byte i) {
end:
  do
  /* a client's prepare (_prepare_ops) */
  :: atomic { rep[i].up && nempty(c2r[i]) ->
       c2r[i]?tk;
       printf("MSC: R%d prepares %d\n", i, tk);
       if
       :: rep[i].recent[tk] != 0 -> ackClient(tk, i, rep[i].recent[tk] - 1)   /* a retry: same SN */
       :: rep[i].recent[tk] == 0 && rep[i].prep[tk] -> skip
       :: rep[i].recent[tk] == 0 && !rep[i].prep[tk] ->
          rep[i].prep[tk] = 1;
          if
          :: rep[i].early[tk] != 0 -> sn = rep[i].early[tk] - 1; applyGrant(i, tk, sn)
          :: rep[i].early[tk] == 0 && RESP(i) -> orderTok(i, tk)
          :: else -> skip
          fi
       fi
     }
  /* grants and errors from the leaf */
  :: atomic { rep[i].up && nempty(l2r[i]) ->
       l2r[i]?mx, tk, sn;
       printf("MSC: R%d gets %e %d %d\n", i, mx, tk, sn);
       if
       :: mx == GRANT -> applyGrant(i, tk, sn)
       :: mx == REJ_UNAV ->            /* _fail: aborted; the client re-sends the same token */
          rep[i].ordering[tk] = 0; rep[i].prep[tk] = 0
       :: mx == REJ_STALE ->           /* to the sender alone: the responsible replica orders it */
          rep[i].ordering[tk] = 0
       fi
     }
  /* (re)attach to the leaf: hello with tails and recent tokens, then every ungranted token */
  :: atomic { rep[i].up && !rep[i].attached && empty(r2l[i]) ->
#ifdef AS_CODED_EARLY
       r2l[i]!HELLO, rep[i].high, rep[i].recent[1], rep[i].recent[2];
#else
       /* the grants it knows: committed (_recent) and also early ones (_early) */
       r2l[i]!HELLO, rep[i].high, (rep[i].recent[1] != 0 -> rep[i].recent[1] : rep[i].early[1]),
                                  (rep[i].recent[2] != 0 -> rep[i].recent[2] : rep[i].early[2]);
#endif
       rep[i].attached = 1;
       printf("MSC: R%d attaches (high %d)\n", i, rep[i].high);
       for (tk : 1 .. NT) {
         if :: rep[i].prep[tk] -> orderTok(i, tk) :: else -> skip fi
       }
     }
  /* the sweep: ungranted for long, still responsible (_sweep) */
  :: atomic { rep[i].up && RESP(i) && rep[i].attached &&
              ((rep[i].prep[1] && !rep[i].ordering[1] && rep[i].early[1] == 0) ||
               (rep[i].prep[2] && !rep[i].ordering[2] && rep[i].early[2] == 0)) ->
       for (tk : 1 .. NT) {
         if :: rep[i].prep[tk] && rep[i].early[tk] == 0 -> orderTok(i, tk) :: else -> skip fi
       }
     }
  /* _repair: a grant whose prepare never came, copied from a readable peer that has it */
  :: atomic { rep[i].up && readable[PEER(i)] &&
              ((rep[i].early[1] != 0 && rep[PEER(i)].store[rep[i].early[1] - 1] != 0) ||
               (rep[i].early[2] != 0 && rep[PEER(i)].store[rep[i].early[2] - 1] != 0)) ->
       if
       :: rep[i].early[1] != 0 && rep[PEER(i)].store[rep[i].early[1] - 1] != 0 -> tk = 1
       :: rep[i].early[2] != 0 && rep[PEER(i)].store[rep[i].early[2] - 1] != 0 -> tk = 2
       fi;
       sn = rep[i].early[tk] - 1;
       if
       :: rep[PEER(i)].store[sn] == tk && rep[i].store[sn] == 0 && !rep[i].sealed[sn] ->
          write(i, sn, tk); committed(i, tk, sn)
       :: rep[PEER(i)].store[sn] == tk && rep[i].store[sn] == tk -> committed(i, tk, sn)
       :: else -> refuse(i, tk)        /* the peer holds another entry or a fill there */
       fi
     }
  /* hole fill, phase 1: the responsible replica sees committed SNs above a gap (for long
     enough) and seals the gap on every member */
  :: atomic { rep[i].up && fstate == 0 && fills < MAXFILL && RESP(i) && readable[i] &&
              rep[i].prefix < rep[i].high ->
       fills++;
       fstate = 1; fby = i; fg = rep[i].prefix; fepoch = epoch;
       printf("MSC: R%d seals SN %d\n", i, fg);
       for (ix : 0 .. NR-1) { fin[ix] = member[ix]; sealAsk[ix] = member[ix] && rep[ix].up; sealGot[ix] = 0 }
     }
  /* SEAL at this member: refuse grants for the SN from now on, answer what it has there */
  :: atomic { rep[i].up && sealAsk[i] ->
       sealAsk[i] = 0;
       rep[i].sealed[fg] = 1;
       sealVal[i] = rep[i].store[fg];
       sealGot[i] = 1;
       printf("MSC: R%d sealed SN %d, has %d\n", i, fg, sealVal[i])
     }
  /* phase 2: every sealed member answered: FILL with the entry one of them had, else a marker */
  :: atomic { rep[i].up && fstate == 1 && fby == i &&
              (!fin[0] || sealGot[0]) && (!fin[1] || sealGot[1]) ->
       fval = FILLV;
       for (ix : 0 .. NR-1) {
         if
         :: fin[ix] && sealVal[ix] != 0 ->
            assert(fval == FILLV || fval == sealVal[ix]);   /* P2 */
            fval = sealVal[ix]
         :: else -> skip
         fi
       }
       fstate = 2;
       printf("MSC: fill SN %d with %d\n", fg, fval);
       for (ix : 0 .. NR-1) { fillAsk[ix] = fin[ix] }
     }
  /* FILL at this member: store it where nothing is committed */
  :: atomic { rep[i].up && fillAsk[i] ->
       fillAsk[i] = 0;
       if
       :: rep[i].store[fg] == 0 ->
          write(i, fg, fval);
          if :: fval != FILLV -> committed(i, fval, fg) :: else -> skip fi
       :: else -> skip
       fi
     }
  :: atomic { rep[i].up && fstate == 2 && fby == i && !fillAsk[0] && !fillAsk[1] -> abortFill() }
  /* the view changed under a fill: give up (sealed stays sealed), try again later */
  :: atomic { rep[i].up && fstate != 0 && fby == i && fepoch != epoch -> abortFill() }
  /* catch-up (_catch_up): a member that is not readable copies what a readable peer has */
  :: atomic { rep[i].up && member[i] && !readable[i] && rep[i].caughtUp == 0 &&
              rep[i].ctarget == 0 && rep[i].attached && readable[PEER(i)] ->
       rep[i].csrc = PEER(i);
       rep[i].cpos = rep[i].prefix;
       rep[i].ctarget = rep[PEER(i)].high + 1;
       printf("MSC: R%d catches up to %d\n", i, rep[PEER(i)].high)
     }
  :: atomic { rep[i].up && rep[i].ctarget != 0 && rep[i].cpos + 1 < rep[i].ctarget ->
       sn = rep[i].cpos;
       vl = rep[rep[i].csrc].store[sn];
       if
       :: vl != 0 && rep[i].store[sn] == 0 -> write(i, sn, vl)
       :: else -> skip
       fi;
       rep[i].cpos++
     }
  :: atomic { rep[i].up && rep[i].ctarget != 0 && rep[i].cpos + 1 >= rep[i].ctarget ->
       if :: member[i] -> rep[i].caughtUp = epoch + 1 :: else -> skip fi;
       rep[i].ctarget = 0; rep[i].cpos = 0; rep[i].csrc = 0;
       printf("MSC: R%d caught up\n", i)
     }
  od
}

proctype Leaf() {
end:
  do
  /* from replica 0 / 1: hello, or an order request (parked while the leaf is not ready) */
  :: atomic { nempty(r2l[0]) && (lready || r2l[0]?[HELLO,_,_,_]) && ROOM_L2R(1) && nfull(l2root) ->
       r2l[0]?mx, ax, bx, hx;
       if
       :: mx == HELLO ->               /* _replica_hello: a = high, b/h = recent sn+1 of tokens */
          if :: ax > tailL -> tailL = ax :: else -> skip fi;
          if :: bx != 0 -> lrecent[1] = bx :: else -> skip fi;
          if :: hx != 0 -> lrecent[2] = hx :: else -> skip fi;
#ifndef AS_CODED_EARLY
          if :: bx > tailL -> tailL = bx :: else -> skip fi;   /* a known grant's SN is taken */
          if :: hx > tailL -> tailL = hx :: else -> skip fi;
#endif
          reported[0] = 1; lfan[0] = 1
       :: mx == ORDER && bx < epoch -> l2r[0]!REJ_STALE, ax, 0
       :: mx == ORDER && bx >= epoch && lrecent[ax] != 0 -> bcast(GRANT, ax, lrecent[ax] - 1)
       :: mx == ORDER && bx >= epoch && lrecent[ax] == 0 && linfl[ax] -> skip
       :: mx == ORDER && bx >= epoch && lrecent[ax] == 0 && !linfl[ax] && rootLink ->
          linfl[ax] = 1; l2root!FWD, ax
       :: mx == ORDER && bx >= epoch && lrecent[ax] == 0 && !linfl[ax] && !rootLink ->
          bcast(REJ_UNAV, ax, 0)
       fi
     }
  :: atomic { nempty(r2l[1]) && (lready || r2l[1]?[HELLO,_,_,_]) && ROOM_L2R(1) && nfull(l2root) ->
       r2l[1]?mx, ax, bx, hx;
       if
       :: mx == HELLO ->
          if :: ax > tailL -> tailL = ax :: else -> skip fi;
          if :: bx != 0 -> lrecent[1] = bx :: else -> skip fi;
          if :: hx != 0 -> lrecent[2] = hx :: else -> skip fi;
#ifndef AS_CODED_EARLY
          if :: bx > tailL -> tailL = bx :: else -> skip fi;   /* a known grant's SN is taken */
          if :: hx > tailL -> tailL = hx :: else -> skip fi;
#endif
          reported[1] = 1; lfan[1] = 1
       :: mx == ORDER && bx < epoch -> l2r[1]!REJ_STALE, ax, 0
       :: mx == ORDER && bx >= epoch && lrecent[ax] != 0 -> bcast(GRANT, ax, lrecent[ax] - 1)
       :: mx == ORDER && bx >= epoch && lrecent[ax] == 0 && linfl[ax] -> skip
       :: mx == ORDER && bx >= epoch && lrecent[ax] == 0 && !linfl[ax] && rootLink ->
          linfl[ax] = 1; l2root!FWD, ax
       :: mx == ORDER && bx >= epoch && lrecent[ax] == 0 && !linfl[ax] && !rootLink ->
          bcast(REJ_UNAV, ax, 0)
       fi
     }
  /* a grant from the root: remember it, relay it to every replica of the shard */
  :: atomic { nempty(root2l) && ROOM_L2R(1) ->
       root2l?mx, tk, sn;
       printf("MSC: L relays %d@%d\n", tk, sn);
       linfl[tk] = 0;
       lrecent[tk] = sn + 1;
       if :: sn + 1 > relEnd -> relEnd = sn + 1 :: else -> skip fi;
       bcast(GRANT, tk, sn)
     }
  /* ready once every member of the shard reported (_check_shard); then tell the parent */
  :: atomic { !lready && (!member[0] || reported[0]) && (!member[1] || reported[1]) ->
       lready = 1;
       printf("MSC: L ready\n");
       leafReport()
     }
  /* the link to the root came back (_parent_link): report again */
  :: atomic { !rootLink -> rootLink = 1; rootKnows = 0; leafReport() }
  /* crash + restart: everything it knew is gone, its streams broke */
  :: atomic { lcrashes < MAXLC ->
       lcrashes++;
       printf("MSC: L crashes\n");
       lready = 0; tailL = 0; relEnd = 0;
       for (ix : 0 .. NR-1) {
         reported[ix] = 0; lfan[ix] = 0;
         drainR2L(ix); drainL2R(ix);
         rep[ix].attached = 0;
         for (tk : 1 .. NT) { rep[ix].ordering[tk] = 0 }
       }
       for (tk : 1 .. NT) { lrecent[tk] = 0; linfl[tk] = 0 }
       drainRoot();
       rootLink = 1; rootKnows = 0
     }
  od
}

proctype Root() {
end:
  do
  /* a child's tails: continue above them; ready once its shard reported */
  :: atomic { l2root?[REPORT,_] ->
       l2root?mx, vl;
       if :: vl > rctr -> rctr = vl :: else -> skip fi;
       rready = 1;
       printf("MSC: root learns %d, counter %d\n", vl, rctr)
     }
  /* OrderingNode.assign (requests wait while not ready) */
  :: atomic { rready && l2root?[FWD,_] && rctr < NSN && nfull(root2l) ->
       l2root?mx, tk;
       root2l!GRANT, tk, rctr;
       printf("MSC: root grants %d@%d\n", tk, rctr);
       rctr++
     }
  /* crash + restart: its counter is gone; the leaf's link breaks and it fails its in-flight
     forwards (fail_in_flight): the replicas abort those entries, the client re-sends */
  :: atomic { rcrashes < MAXRC && ROOM_L2R(NT) ->
       rcrashes++;
       printf("MSC: root crashes\n");
       rctr = 0; rready = 0;
       drainRoot();
       rootLink = 0; rootKnows = 0;
       for (tk : 1 .. NT) {
         if :: linfl[tk] -> linfl[tk] = 0; bcast(REJ_UNAV, tk, 0) :: else -> skip fi
       }
     }
  od
}

proctype Controller() {
end:
  do
  /* a replica process dies (SIGKILL) and is restarted by the launcher */
  :: atomic { repcrashes < MAXREP && rep[0].up -> repcrashes++; crashReplica(0); printf("MSC: R0 crashes\n") }
  :: atomic { repcrashes < MAXREP && rep[1].up -> repcrashes++; crashReplica(1); printf("MSC: R1 crashes\n") }
  :: atomic { !rep[0].up -> rep[0].up = 1; rep[0].restarted = 1; printf("MSC: R0 restarts\n") }
  :: atomic { !rep[1].up -> rep[1].up = 1; rep[1].restarted = 1; printf("MSC: R1 restarts\n") }
  /* silent for failure_timeout_ms: out of the view, unless it is the last readable member */
  :: atomic { removals < MAXRM && !rep[0].up && member[0] && (!readable[0] || readable[1]) ->
       removals++; epoch++; member[0] = 0; readable[0] = 0; viewChanged() }
  :: atomic { removals < MAXRM && !rep[1].up && member[1] && (!readable[1] || readable[0]) ->
       removals++; epoch++; member[1] = 0; readable[1] = 0; viewChanged() }
  /* answers with a new incarnation: not readable until caught up */
  :: atomic { rep[0].up && rep[0].restarted && readable[0] && readable[1] ->
       epoch++; readable[0] = 0; viewChanged() }
  :: atomic { rep[1].up && rep[1].restarted && readable[1] && readable[0] ->
       epoch++; readable[1] = 0; viewChanged() }
  /* answers and is attached again: a member, not readable */
  :: atomic { !member[0] && rep[0].up && rep[0].attached -> epoch++; member[0] = 1; viewChanged() }
  :: atomic { !member[1] && rep[1].up && rep[1].attached -> epoch++; member[1] = 1; viewChanged() }
  /* reports a catch-up at the current epoch: readable */
  :: atomic { member[0] && !readable[0] && rep[0].up && rep[0].caughtUp == epoch + 1 ->
       epoch++; readable[0] = 1; rep[0].restarted = 0; viewChanged() }
  :: atomic { member[1] && !readable[1] && rep[1].up && rep[1].caughtUp == epoch + 1 ->
       epoch++; readable[1] = 1; rep[1].restarted = 0; viewChanged() }
  od
}

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
