/*
 * FlexLog: one color FAMILY in Promela. Two member colors share the root's SN counter; the
 * two replicas of one shard store each member as its own color (they know nothing of the
 * family); a reader of the family seals and fills a hole in the family's order.
 * README.md next to this file says what maps to what, what is left out and how to run it;
 * flexlog.pml covers one color with the leaf, view changes and replica crashes.
 *
 *   proctype Client      two core/client.py clients, one append each: token 1 to member A,
 *                        token 2 to member B (unordered between them, so either member's
 *                        append can reach a replica, and get its SN, first)
 *   proctype Replica(i)  core/replica_protocol.py: prepare, grants/_settled (sealed: the
 *                        append awaits the fill; stored: same entry or FILLED), hello,
 *                        leaf_attached, store_copy (a copy carries its token)
 *   proctype Root        the family's owner, here also the shard's leaf (a one-node tree:
 *                        the relaying leaf is flexlog.pml's): core/sequencer_protocol.py
 *                        replica_hello, _regrant; core/ordering.py OrderingNode.assign and
 *                        learn_tail, which folds each member's tail into the family counter
 *                        through registry.counter_of
 *   proctype Reader(r)   the family fill of core/family_fill.py: seal every member at every
 *                        replica, then one fill per member and replica
 *
 * Properties (assert): P0 the root never hands out an SN some member stores, holds early, waits
 * to fill or has a grant for on the way; P1 an append the client completes is stored at its SN
 * on both replicas (and a replica acks a token only with an SN where it stores it); P2 at one
 * SN one member holds one payload on every replica, and (family) no SN holds entries of two
 * members, nor an entry in one member and a fill marker in another; an acknowledged SN is
 * never filled; P2b one entry never gets two SNs; P4 stored entries are never replaced.
 * CHECK_QUIESCENT: once nothing moves, every append completed or failed and the family's
 * merged order has no unresolved SN below its highest on either replica.
 *
 * Variants that must fail (spin -D...):
 *   ONE_MEMBER_TAIL  a restarted root learns the counter from member A's tails only.
 *   FILL_OVER        the fill stores a marker in a member that found nothing even where
 *                    another member holds an entry.
 *   SEAL_ONE_MEMBER  the reader seals and fills member A only (a member it does not know:
 *                    another shard of the family, or a registry read before the member).
 *   MARKER_HOLDS     a fill marker found by the seal counts as a member holding the SN, so
 *                    members that found nothing get no marker (needs MAXGIVEUP, MAXFILL=2).
 *   TAIL_HOLE        the reader also takes an SN below the owner's next SN (a member's
 *                    `tail`) for a hole, with no member holding a higher one.
 *   MAXREP >= 1      not a variant: the design as specified, with replica restarts. Seals are
 *                    volatile, so this fails (README.md, "Findings"); DURABLE_SEAL keeps
 *                    them across a restart, which passes.
 * Bounds: MAXSC root crashes, MAXREP replica restarts, NRD readers that may fill at the same
 *   time, MAXFILL fills started in all, MAXGIVEUP fills stopped between two messages (their
 *   seals stay); SNs 0..3. A seal is one flag per member and SN: a fill drops it for every
 *   reader that sealed there (the harsher reading of "drops the seal of that range").
 */

#define NR    2            /* replicas of the shard */
#define NM    2            /* members: A (0) and B (1) */
#define NT    2            /* appends: token t goes to member MEM(t), payload = token */
#define MEM(t) ((t) - 1)
#define NSN   4            /* SNs 0..3: HOLE_BY below is written out for 4 */
#define FILLV 3            /* payload of a fill marker: no token has it */

#ifndef MAXSC
#define MAXSC 1
#endif
#ifndef MAXFILL
#define MAXFILL 1
#endif
#ifndef MAXGIVEUP
#define MAXGIVEUP 0
#endif
#ifndef MAXREP
#define MAXREP 0
#endif
#ifndef NRD
#define NRD 1              /* readers that may fill at the same time */
#endif

#define IDLE    0
#define PENDING 1
#define DONE    2
#define FAILED  3

#define CAP_R2S 3          /* hello and one order per token */
#define CAP_S2R 4

mtype = { HELLO, ORDER };

/* ---- replicas: every member is a color of its own ------------------------------------------ */
typedef Rep {
  byte store[NM * NSN]; /* per member: 0 nothing, a token, FILLV a fill marker (durable) */
  bool sealed[NM * NSN];/* _sealed per member color (volatile) */
  bool attached;        /* its stream to the sequencer is up */
  bool prep[NT + 1];    /* _ungranted */
  bool ord[NT + 1];     /* an order request is out and not answered */
  byte early[NT + 1];   /* sn+1 of a grant that outran the prepare (_early) */
  byte recent[NT + 1];  /* sn+1 it committed the token at (_recent) */
  byte await[NT + 1];   /* sn+1 of a grant in a sealed range (_awaiting_fill) */
}
Rep rep[NR];
#define ST(i, m, s)     rep[i].store[(m) * NSN + (s)]
#define SEALED(i, m, s) rep[i].sealed[(m) * NSN + (s)]

/* ---- clients ------------------------------------------------------------------------------- */
byte cstat[NT + 1];
byte ackSn[NT + 1];              /* sn+1 a replica acked the token with */
byte ackBy[NT + 1];              /* bit x: replica x acked it */
bool pin[NR * (NT + 1)];         /* a prepare on its way to a replica */
#define PIN(x, t) pin[(x) * (NT + 1) + (t)]

/* ---- the family's owner: the root, here the shard's only sequencer node ------------------ */
byte ctr;                        /* the family counter, shared by both members */
bool sready = 1;
bool reported[NR];
bool sfan[NR];                   /* the replicas whose hello it read: grants go to them */
byte srecent[NT + 1];            /* the token's SN+1 (_recent_grants and the hellos' tokens) */
byte scrashes;
byte repcrashes;

/* ---- the readers' fills: 0 idle, 1 sealing, 2 filling; fnext walks (replica, member) ---- */
byte fstate[NRD], fg[NRD], fnext[NRD];
byte found[NRD * NM];            /* what reader r's seal found in each member at fg[r] */
#define FOUND(r, m) found[(r) * NM + (m)]
byte fills, giveups;

chan r2s[NR] = [CAP_R2S] of { mtype, byte, byte, byte, byte };  /* HELLO(tailA, tailB, sn1, sn2),
                                                                   ORDER(t) */
chan s2r[NR] = [CAP_S2R] of { byte, byte };                     /* GRANT(t, sn) */

hidden byte tk, sn, vl, mm, ax, bx, hx, ix, wx, wy, zx;
hidden mtype mx;

/* The reader knows both members; SEAL_ONE_MEMBER: member A only. */
#ifdef SEAL_ONE_MEMBER
#define KNOWN(m) ((m) == 0)
#else
#define KNOWN(m) 1
#endif
/* the family's merged order at replica r: SN s is resolved once a member holds an entry or a
   marker there; a hole is an unresolved SN below a resolved one */
#define RES(r, s)     ((KNOWN(0) && ST(r, 0, s) != 0) || (KNOWN(1) && ST(r, 1, s) != 0))
#define RES_ALL(r, s) (ST(r, 0, s) != 0 || ST(r, 1, s) != 0)
#define HOLE_BY(R, r) ((!R(r, 0) && (R(r, 1) || R(r, 2) || R(r, 3))) || \
                       (!R(r, 1) && (R(r, 2) || R(r, 3))) || (!R(r, 2) && R(r, 3)))
#ifdef TAIL_HOLE
/* the lowest unresolved SN lies below the owner's next SN (a member's `tail`) */
#define BELOW_CTR(r)  ((!RES(r, 0) && ctr > 0) || (RES(r, 0) && !RES(r, 1) && ctr > 1) || \
                       (RES(r, 0) && RES(r, 1) && !RES(r, 2) && ctr > 2) || \
                       (RES(r, 0) && RES(r, 1) && RES(r, 2) && !RES(r, 3) && ctr > 3))
#define HOLE(r)       (HOLE_BY(RES, r) || (sready && BELOW_CTR(r)))
#else
#define HOLE(r)       HOLE_BY(RES, r)
#endif

/* ================= helpers ================================================================= */

/* recorded even once the append failed: a replica acked the SN, so none may fill it */
inline ackClient(tt, ii, ss) {
  assert(ST(ii, MEM(tt), ss) == tt);                            /* P1 at the replica */
  assert(ackBy[tt] == 0 || ackSn[tt] == ss + 1);                /* P2b as the client sees it */
  ackSn[tt] = ss + 1; ackBy[tt] = ackBy[tt] | (1 << ii);
  printf("MSC: R%d acks %d with SN %d\n", ii, tt, ss)
}

/* Store vv in member m at SN ss on replica ii (commit, copy, fill). */
inline write(ii, m, ss, vv) {
  assert(ST(ii, m, ss) == 0);                                   /* P4 */
  for (wx : 0 .. NR - 1) {
    assert(ST(wx, m, ss) == 0 || ST(wx, m, ss) == vv);          /* P2 */
    assert(ST(wx, 1 - m, ss) == 0 || (vv == FILLV && ST(wx, 1 - m, ss) == FILLV))  /* family P2 */
  }
  if
  :: vv != FILLV ->
     for (wx : 0 .. NR - 1) {
       for (wy : 0 .. NSN - 1) { assert(wy == ss || ST(wx, m, wy) != vv) }       /* P2b */
     }
  :: else ->
     assert(ackSn[1] != ss + 1 && ackSn[2] != ss + 1)           /* an acked SN is never filled */
  fi;
  ST(ii, m, ss) = vv;
  printf("MSC: R%d stores %d in member %d at SN %d\n", ii, vv, m, ss)
}

inline orderTok(ii, tt) {
  if
  :: rep[ii].attached && !rep[ii].ord[tt] ->
     rep[ii].ord[tt] = 1; r2s[ii]!ORDER, tt, 0, 0, 0;
     printf("MSC: R%d orders %d\n", ii, tt)
  :: else -> skip
  fi
}

inline committed(ii, tt, ss) {
  rep[ii].recent[tt] = ss + 1;
  rep[ii].early[tt] = 0; rep[ii].await[tt] = 0; rep[ii].ord[tt] = 0;
  if :: rep[ii].prep[tt] -> rep[ii].prep[tt] = 0; ackClient(tt, ii, ss) :: else -> skip fi
}

/* _fail with FILLED: the append fails, never acknowledged */
inline failTok(ii, tt) {
  rep[ii].await[tt] = 0; rep[ii].ord[tt] = 0;
  if
  :: rep[ii].prep[tt] ->
     rep[ii].prep[tt] = 0;
     printf("MSC: R%d refuses %d (FILLED)\n", ii, tt);
     if :: cstat[tt] == PENDING -> cstat[tt] = FAILED; printf("MSC: append %d fails\n", tt) :: else -> skip fi
  :: else -> skip
  fi
}

/* grants -> _settled, then commit (UnknownToken: kept early). Only the grant's own member is
   looked at: the replica knows nothing of the family. */
inline applyGrant(ii, tt, ss) {
  mm = MEM(tt);
  if
  :: rep[ii].recent[tt] != 0 -> rep[ii].early[tt] = 0
  :: rep[ii].recent[tt] == 0 && SEALED(ii, mm, ss) ->
     rep[ii].early[tt] = 0;
     if
     :: rep[ii].prep[tt] -> rep[ii].await[tt] = ss + 1; printf("MSC: R%d: %d@%d awaits the fill\n", ii, tt, ss)
     :: else -> skip
     fi
  :: rep[ii].recent[tt] == 0 && !SEALED(ii, mm, ss) && ST(ii, mm, ss) != 0 ->
     rep[ii].early[tt] = 0;
     if
     :: !rep[ii].prep[tt] -> skip                   /* ordered again when it comes */
     :: rep[ii].prep[tt] && ST(ii, mm, ss) == tt -> committed(ii, tt, ss)
     :: rep[ii].prep[tt] && ST(ii, mm, ss) != tt -> failTok(ii, tt)
     fi
  :: rep[ii].recent[tt] == 0 && !SEALED(ii, mm, ss) && ST(ii, mm, ss) == 0 ->
     if
     :: !rep[ii].prep[tt] -> rep[ii].early[tt] = ss + 1; printf("MSC: R%d keeps early grant %d@%d\n", ii, tt, ss)
     :: rep[ii].prep[tt] -> write(ii, mm, ss, tt); committed(ii, tt, ss)
     fi
  fi
}

/* store_copy: stored where nothing is, under its token: a copied append counts as committed
   here (and is acked if its prepare is here) */
inline storeCopy(ii, m, ss, vv) {
  if
  :: ST(ii, m, ss) != 0 -> skip
  :: ST(ii, m, ss) == 0 && vv == FILLV -> write(ii, m, ss, vv)
  :: ST(ii, m, ss) == 0 && vv != FILLV ->
     write(ii, m, ss, vv);
     if :: rep[ii].recent[vv] == 0 -> committed(ii, vv, ss) :: else -> skip fi
  fi
}

inline bcast(tt, ss) {
  for (wx : 0 .. NR - 1) { if :: sfan[wx] -> s2r[wx]!tt, ss :: else -> skip fi }
}

inline learn(v) { if :: v > ctr -> ctr = v :: else -> skip fi }

inline resetFill(r) { fstate[r] = 0; fg[r] = 0; fnext[r] = 0; FOUND(r, 0) = 0; FOUND(r, 1) = 0 }

/* ================= processes =============================================================== */

inline complete(tt) {
  cstat[tt] = DONE;
  sn = ackSn[tt] - 1;
  printf("MSC: append %d done at SN %d\n", tt, sn);
  for (ix : 0 .. NR - 1) {
    assert(ST(ix, MEM(tt), sn) == tt);                          /* P1 */
    assert(ST(ix, 1 - MEM(tt), sn) == 0)                        /* family P2, acked */
  }
}

proctype Client() {
end:
  do
  :: d_step { cstat[1] == IDLE -> cstat[1] = PENDING; PIN(0, 1) = 1; PIN(1, 1) = 1; printf("MSC: C submits 1 to A\n"); skip }
  :: d_step { cstat[2] == IDLE -> cstat[2] = PENDING; PIN(0, 2) = 1; PIN(1, 2) = 1; printf("MSC: C submits 2 to B\n"); skip }
  /* an append completes once both replicas acked it */
  :: d_step { cstat[1] == PENDING && ackBy[1] == 3 -> complete(1); skip }
  :: d_step { cstat[2] == PENDING && ackBy[2] == 3 -> complete(2); skip }
  od
}

inline prepare(ii) {
  printf("MSC: R%d prepares %d\n", ii, tk);
  if
  :: rep[ii].recent[tk] != 0 -> ackClient(tk, ii, rep[ii].recent[tk] - 1)
  :: rep[ii].recent[tk] == 0 ->
     rep[ii].prep[tk] = 1;
     if
     :: rep[ii].early[tk] != 0 -> sn = rep[ii].early[tk] - 1; rep[ii].early[tk] = 0; applyGrant(ii, tk, sn)
     :: rep[ii].early[tk] == 0 -> orderTok(ii, tk)
     fi
  fi
}

/* SIGKILL and restart of replica ii (at once: the view is not modelled): its volatile state
   and its streams are gone, seals included; the store (PM) keeps each entry's token; the
   clients re-send what it has not acked on the reopened stream */
inline crashReplica(ii) {
  printf("MSC: R%d crashes and restarts\n", ii);
  rep[ii].attached = 0; sfan[ii] = 0;
  do :: nempty(r2s[ii]) -> r2s[ii]?_, _, _, _, _ :: empty(r2s[ii]) -> break od;
  do :: nempty(s2r[ii]) -> s2r[ii]?_, _ :: empty(s2r[ii]) -> break od;
#ifndef DURABLE_SEAL
  for (ix : 0 .. NM * NSN - 1) { rep[ii].sealed[ix] = 0 }
#endif
  for (tk : 1 .. NT) {
    rep[ii].prep[tk] = 0; rep[ii].ord[tk] = 0; rep[ii].early[tk] = 0; rep[ii].await[tk] = 0;
    rep[ii].recent[tk] = 0;
    for (ix : 0 .. NSN - 1) { if :: ST(ii, MEM(tk), ix) == tk -> rep[ii].recent[tk] = ix + 1 :: else -> skip fi }
    if :: cstat[tk] == PENDING && !(ackBy[tk] & (1 << ii)) -> PIN(ii, tk) = 1 :: else -> skip fi
  }
}

proctype Replica(byte i) {
end:
  do
  :: d_step { repcrashes < MAXREP -> repcrashes++; crashReplica(i); skip }
  :: d_step { PIN(i, 1) && nfull(r2s[i]) -> PIN(i, 1) = 0; tk = 1; prepare(i); skip }
  :: d_step { PIN(i, 2) && nfull(r2s[i]) -> PIN(i, 2) = 0; tk = 2; prepare(i); skip }
  :: d_step { nempty(s2r[i]) && nfull(r2s[i]) ->
       s2r[i]?tk, sn;
       rep[i].ord[tk] = 0;
       printf("MSC: R%d gets grant %d@%d\n", i, tk, sn);
       applyGrant(i, tk, sn); skip }
  /* a new stream: hello with each member's tail and the SN of every token it stores or holds
     early, then leaf_attached orders everything ungranted */
  :: d_step { !rep[i].attached && empty(r2s[i]) ->
       ax = 0; bx = 0; hx = rep[i].early[1]; zx = rep[i].early[2];
       for (ix : 0 .. NSN - 1) {
         if :: ST(i, 0, ix) != 0 -> ax = ix + 1 :: else -> skip fi;
         if :: ST(i, 1, ix) != 0 -> bx = ix + 1 :: else -> skip fi;
         if :: ST(i, 0, ix) == 1 -> hx = ix + 1 :: else -> skip fi;
         if :: ST(i, 1, ix) == 2 -> zx = ix + 1 :: else -> skip fi
       }
       r2s[i]!HELLO, ax, bx, hx, zx;
       rep[i].attached = 1;
       printf("MSC: R%d attaches (tails A %d B %d)\n", i, ax, bx);
       for (tk : 1 .. NT) { if :: rep[i].prep[tk] -> orderTok(i, tk) :: else -> skip fi }; skip }
  od
}

/* one message from replica zx: a hello, or an order (answered from the grants it knows, else
   a new SN of the family counter) */
inline rootRecv() {
  r2s[zx]?mx, ax, bx, hx, vl;
  if
  :: mx == HELLO ->
     /* learn_tail(color, tail) for every member: counter_of folds it into the family's counter */
     learn(ax); learn(hx);
#ifndef ONE_MEMBER_TAIL
     learn(bx); learn(vl);
#endif
     if :: hx != 0 -> srecent[1] = hx :: else -> skip fi;
     if :: vl != 0 -> srecent[2] = vl :: else -> skip fi;
     reported[zx] = 1; sfan[zx] = 1;
     /* _regrant: the grants it may have missed, at or above its tail of their member */
     for (ix : 0 .. NSN - 1) {
       if :: srecent[1] == ix + 1 && ix >= ax -> s2r[zx]!1, ix :: else -> skip fi;
       if :: srecent[2] == ix + 1 && ix >= bx -> s2r[zx]!2, ix :: else -> skip fi
     }
     if :: !sready && reported[0] && reported[1] -> sready = 1; printf("MSC: root ready, counter %d\n", ctr) :: else -> skip fi
  :: mx == ORDER && srecent[ax] != 0 -> bcast(ax, srecent[ax] - 1)
  :: mx == ORDER && srecent[ax] == 0 ->
     /* P0: an SN some member stores, holds early, waits to fill or has a grant for on the way
        is never handed out again */
     for (ix : 0 .. NR - 1) {
       assert(ST(ix, 0, ctr) == 0 && ST(ix, 1, ctr) == 0);
       for (tk : 1 .. NT) {
         assert(rep[ix].early[tk] != ctr + 1 && rep[ix].await[tk] != ctr + 1);
         assert(!(s2r[ix]??[eval(tk), eval(ctr)]))
       }
     }
     for (ix : 0 .. NRD - 1) { assert(fstate[ix] == 0 || fg[ix] != ctr) }
     srecent[ax] = ctr + 1;
     printf("MSC: root grants %d@%d\n", ax, ctr);
     bcast(ax, ctr);
     ctr++
  fi
}

#define ROOT_CAN(x) (r2s[x]?[HELLO, _, _, _, _] || (sready && r2s[x]?[ORDER, _, _, _, _] && ctr < NSN))
#define S2R_ROOM (len(s2r[0]) + 2 <= CAP_S2R && len(s2r[1]) + 2 <= CAP_S2R)

proctype Root() {
end:
  do
  :: d_step { ROOT_CAN(0) && S2R_ROOM -> zx = 0; rootRecv(); skip }
  :: d_step { ROOT_CAN(1) && S2R_ROOM -> zx = 1; rootRecv(); skip }
  /* crash + restart: the counter and the grants it knew are gone, the streams broke */
  :: d_step { scrashes < MAXSC ->
       scrashes++;
       printf("MSC: root crashes\n");
       ctr = 0; sready = 0;
       for (tk : 1 .. NT) { srecent[tk] = 0 }
       for (ix : 0 .. NR - 1) {
         reported[ix] = 0; sfan[ix] = 0;
         do :: nempty(r2s[ix]) -> r2s[ix]?_, _, _, _, _ :: empty(r2s[ix]) -> break od;
         do :: nempty(s2r[ix]) -> s2r[ix]?_, _ :: empty(s2r[ix]) -> break od;
         rep[ix].attached = 0;
         for (tk : 1 .. NT) { rep[ix].ord[tk] = 0 }
       }; skip }
  od
}

inline startFill(r) {
  fg[r] = 0;
  do :: RES(zx, fg[r]) -> fg[r]++ :: else -> break od;
  fills++; fstate[r] = 1; fnext[r] = 0;
  printf("MSC: reader %d sees SN %d unresolved at R%d: seals it\n", r, fg[r], zx)
}

/* The family fill: reader r saw SN fg[r] unresolved at replica zx below a resolved one for
   long enough (any time here); it seals fg[r] in every member at every replica, one message
   each, and once all answered sends one fill per member and replica. */
proctype Reader(byte r) {
end:
  do
  :: d_step { fstate[r] == 0 && fills < MAXFILL && HOLE(0) -> zx = 0; startFill(r); skip }
  :: d_step { fstate[r] == 0 && fills < MAXFILL && HOLE(1) -> zx = 1; startFill(r); skip }
  /* seal at replica fnext[r]/NM, member fnext[r]%NM: grants there await the fill from now on,
     early grants there are dropped, what the member stores there is answered */
  :: d_step { fstate[r] == 1 ->
       ix = fnext[r] / NM; mm = fnext[r] % NM;
       if
       :: KNOWN(mm) ->
          SEALED(ix, mm, fg[r]) = 1;
          for (tk : 1 .. NT) {
            if :: MEM(tk) == mm && rep[ix].early[tk] == fg[r] + 1 -> rep[ix].early[tk] = 0 :: else -> skip fi
          }
          vl = ST(ix, mm, fg[r]);
          if
          :: vl != 0 -> assert(FOUND(r, mm) == 0 || FOUND(r, mm) == vl); FOUND(r, mm) = vl   /* P2 */
          :: else -> skip
          fi;
          printf("MSC: R%d sealed member %d at SN %d, has %d\n", ix, mm, fg[r], vl)
       :: else -> skip
       fi;
       fnext[r]++;
       if :: fnext[r] == NR * NM -> fstate[r] = 2; fnext[r] = 0; printf("MSC: reader %d found A %d B %d: fill\n", r, FOUND(r, 0), FOUND(r, 1)) :: else -> skip fi; skip }
  /* apply_fill for one member at one replica: what that member had somewhere is copied where
     missing; a marker goes only where no member had an entry; the member's appends awaiting
     the fill there are acked if the fill stored them, else fail; the seal is dropped */
  :: d_step { fstate[r] == 2 ->
       ix = fnext[r] / NM; mm = fnext[r] % NM;
       if
       :: KNOWN(mm) ->
          if
          :: FOUND(r, mm) != 0 -> storeCopy(ix, mm, fg[r], FOUND(r, mm))
#if defined(FILL_OVER)
          :: FOUND(r, mm) == 0 -> storeCopy(ix, mm, fg[r], FILLV)
#elif defined(MARKER_HOLDS)
          :: FOUND(r, mm) == 0 && FOUND(r, 1 - mm) == 0 -> storeCopy(ix, mm, fg[r], FILLV)
          :: FOUND(r, mm) == 0 && FOUND(r, 1 - mm) != 0 -> skip
#else
          :: FOUND(r, mm) == 0 && (FOUND(r, 1 - mm) == 0 || FOUND(r, 1 - mm) == FILLV) -> storeCopy(ix, mm, fg[r], FILLV)
          :: FOUND(r, mm) == 0 && FOUND(r, 1 - mm) != 0 && FOUND(r, 1 - mm) != FILLV -> skip   /* the other member's SN */
#endif
          fi;
          for (tk : 1 .. NT) {
            if
            :: MEM(tk) == mm && rep[ix].await[tk] == fg[r] + 1 ->
               if :: ST(ix, mm, fg[r]) == tk -> committed(ix, tk, fg[r]) :: else -> failTok(ix, tk) fi
            :: else -> skip
            fi
          }
          SEALED(ix, mm, fg[r]) = 0
       :: else -> skip
       fi;
       fnext[r]++;
       if :: fnext[r] == NR * NM -> resetFill(r) :: else -> skip fi; skip }
  /* the reader stops (dies, gives up) between two messages: its seals stay */
  :: d_step { fstate[r] != 0 && giveups < MAXGIVEUP -> giveups++; printf("MSC: reader %d gives up\n", r); resetFill(r); skip }
  od
}

#ifdef CHECK_QUIESCENT
/* Once nothing can move any more: every append completed or failed, and the family's merged
   order has no unresolved SN below a resolved one on either replica. */
active proctype Quiescent() {
  timeout ->
  assert(cstat[1] == DONE || cstat[1] == FAILED);
  assert(cstat[2] == DONE || cstat[2] == FAILED);
  assert(!HOLE_BY(RES_ALL, 0) && !HOLE_BY(RES_ALL, 1))
}
#endif

init {
  atomic {
    for (ix : 0 .. NR - 1) { reported[ix] = 1; sfan[ix] = 1; rep[ix].attached = 1 }
    run Client();
    run Replica(0);
    run Replica(1);
    run Root();
    for (ix : 0 .. NRD - 1) { run Reader(ix) }
  }
}
