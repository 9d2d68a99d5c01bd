#!/usr/bin/env python3
"""Check a pippyc schedule.json: the JSON Schema, then the cross-references and the rules of the
action lists that a schema cannot express. An independent re-implementation of the rules of
common/schedule_sim.c (written from its header and schemas/schedule.schema.json, not from its
code): the tests use it as the oracle for pippyc's own checker and simulator.

usage: validate_schedule.py OUT/schedule.json [--schema FILE] [-q] [--predict]

1. Validates against schemas/schedule.schema.json (jsonschema, draft 2020-12).
2. Then (only when the schema holds) checks that
   - config agrees with the arrays (stages, ranks = the pipeline's ranks x dp, batch = microbatches x
     microbatch_size, one peak_memory_bytes entry per stage, one idle_ms entry per rank);
   - stages[k].index == k, edges[k].id == k, ranks[r].rank == r, reductions[k].id == k,
     ranks[r].program is its stage's program;
   - a training file has the training fields on every stage, an inference file none;
   - every edge's producer and consumers are valid stages, each consumer after the producer for an
     activation, before it for a gradient (gradient edges only in training);
   - each stage input with from=k has a matching output in stage k (same edge, same name, shape,
     dtype and phase), the edge's producer is k and its consumers include the stage; each output's
     `to` equals its edge's consumers; passthrough points at an input of the same name;
   - tied parameters and reductions: valid, distinct stages; each reduction's parameter is held
     by each member (a trainable parameter at the offset given) and listed under tied with the
     same stages;
   - per rank, its actions: a stage the rank runs, a microbatch in 0..M-1, a peer that exchanges
     values with the stage in that direction and phase (RECV_F from an activation producer,
     SEND_F to an activation consumer, RECV_B from a gradient producer, SEND_B to a gradient
     consumer), a reduction the stage belongs to; F (training: B and W too) exactly once per
     microbatch, F before B before W; every receive exactly once and before the F / B that needs
     it, every send exactly once and after the F / B that makes its data; per member stage of a
     reduction, ALLREDUCE exactly once after the stage's last W (mode replicate), or BROADCAST
     exactly once before its first F and REDUCE exactly once after its last W (mode transmit); STEP exactly once per rank, last (training), none
     at inference, nor B, W, SEND_B, RECV_B, ALLREDUCE, REDUCE, BROADCAST; a stage never holds more microbatches
     (F to W) than its stash_slots;
   - the ranks do not deadlock: replaying every list in order (sends and receive postings never
     block; F waits until every producer has sent it the microbatch's activations, B likewise
     for the gradients; ALLREDUCE, REDUCE and BROADCAST wait for every member stage, STEP for every
     rank) runs every
     action.
   A dynamic schedule (config.schedule "dynamic" with config.window K, and only then a window) is
   checked by the same rules on its lists, except the stash: every training stage keeps
   stash_slots >= min(K, M) (the window rule); and it is replayed by its policy as the schema
   describes it (per stage: F in order and at most K ahead of the oldest microbatch whose W has not
   run — inference: of the next F —, B once its F ran, W in order; transfers at once; collectives
   as barriers in list order; F / B also wait for their data and for every consumer of their
   outputs to have finished microbatch mb - slots (min(K, M); min(K + 1, M) towards a later
   stage); the rank with the earliest start goes first (ties: the lower rank; 1e-9 relative), and runs the first such action in list order).
   With --predict it also prints the prediction of that replay as JSON (times from
   stages[].predicted_*_ms, each transfer between two stages in one phase taking
   latency + (sum of their edges' bytes) / bandwidth from prediction.cost_model, collectives as
   X.collective_ms; after STEP each rank runs its stages' predicted_optimizer_ms): step_ms, bubble_fraction, busy_ms and idle_ms per rank, in_flight per stage,
   and collective_ms per rank (from reaching each collective to its end).
Prints "ok", or one line per problem (where: what), and exits 0 when ok, 1 otherwise (2 on bad usage).
"""

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_SCHEMA = os.path.join(os.path.dirname(os.path.dirname(HERE)), "schemas", "schedule.schema.json")

INFERENCE_OPS = {"RECV_F", "F", "SEND_F"}
COMPUTE = {"F": "activation", "B": "gradient"}      # what each waits for
SENDS = {"SEND_F": "activation", "SEND_B": "gradient"}
RECVS = {"RECV_F": "activation", "RECV_B": "gradient"}
MAKER = {"activation": "F", "gradient": "B"}          # the computation whose data a phase carries
COLLECTIVES = {"ALLREDUCE", "REDUCE", "BROADCAST"}    # on a reduction's member stages
TRAINING_STAGE_KEYS = ["backward_nodes", "weight_gradient_nodes", "predicted_backward_ms", "predicted_weight_ms",
                       "trainable_bytes", "stash_bytes", "stash_slots", "parameters"]


def json_path(parts):
    return "/" + "/".join(str(p) for p in parts) if parts else "/"


def schema_problems(doc, schema):
    try:
        import jsonschema
    except ImportError:
        return ["jsonschema is not installed (pip install jsonschema)"]
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    v = cls(schema)
    out = []
    for e in sorted(v.iter_errors(doc), key=lambda e: [str(p) for p in e.absolute_path]):
        msg = e.message
        if e.validator == "not" and isinstance(e.instance, dict) and "op" in e.instance:
            msg = f"a field that {e.instance.get('op')} does not take (F/B/W: stage, mb; transfers: stage, mb, " \
                  f"peer; ALLREDUCE, REDUCE, BROADCAST: stage, reduction; STEP: nothing)"
        out.append(f"{json_path(list(e.absolute_path))}: {msg}")
    return out


class Doc:
    """The file, with the derived maps the checks share."""

    def __init__(self, d):
        self.d = d
        self.cfg = d["config"]
        self.stages, self.edges, self.ranks = d["stages"], d["edges"], d["ranks"]
        self.reductions = d.get("reductions", [])
        self.S, self.E, self.R = len(self.stages), len(self.edges), len(self.ranks)
        self.all_ranks = self.ranks  # with dp > 1 the rules below see replica 0 (see replica_problems)
        self.M = self.cfg["microbatches"]
        self.training = self.cfg["mode"] == "training"
        self.window = self.cfg.get("window") if self.cfg.get("schedule") == "dynamic" else None

    def valid_stage(self, k):
        return isinstance(k, int) and not isinstance(k, bool) and 0 <= k < self.S

    def peers(self, s, phase, direction):
        """Stages that send values of phase to s (direction 'from') or that s sends them to ('to')."""
        out = set()
        for ed in self.edges:
            if ed["phase"] != phase or not self.valid_stage(ed["producer"]):
                continue
            if direction == "from" and s in ed["consumers"]:
                out.add(ed["producer"])
            if direction == "to" and ed["producer"] == s:
                out.update(c for c in ed["consumers"] if self.valid_stage(c))
        return sorted(out)

    def pair_bytes(self, phase, frm, to):
        return sum(ed["bytes"] for ed in self.edges if ed["phase"] == phase and ed["producer"] == frm
                   and to in ed["consumers"])

    def stages_of_rank(self, r):
        return [k for k, st in enumerate(self.stages) if st["rank"] == r]

    def optimizer_ms(self, r):
        """The optimizer's steps rank r runs after STEP: its stages' predicted_optimizer_ms (with dp, a
        replica's rank runs those of the rank it copies in replica 0)."""
        per = self.R // max(self.cfg.get("dp", 1), 1)
        return sum(self.stages[s].get("predicted_optimizer_ms", 0.0) for s in self.stages_of_rank(r % per))

    def collective_ms(self, op, k):
        """How long collective op of reduction k takes once its members are there, as
        runtime/collective.c runs it over the n processes that exchange (the replicas for a
        data-parallel reduction, else the ranks of its member stages), each message taking
        latency + bytes / bandwidth: the ring all-reduce 2(n-1) steps of bytes/n; broadcast and
        reduce, pipelined chains: (n-1) latencies and the bytes once. STEP: nothing."""
        if op == "STEP":
            return 0.0
        rd = self.reductions[k]
        cm = self.d["prediction"]["cost_model"]
        bw, lat = cm["link_gbytes_per_s"] * 1e9, cm["link_latency_us"] * 1e-3
        n = self.cfg.get("dp", 1) if rd.get("kind") == "data_parallel" else \
            len({self.stages[s]["rank"] for s in rd["stages"]})
        b = rd["bytes"] / bw * 1e3 if bw > 0 else 0.0
        if n <= 1 or rd["bytes"] <= 0:
            return 0.0
        return 2 * (n - 1) * (lat + b / n) if op == "ALLREDUCE" else (n - 1) * lat + b


def config_problems(x, bad):
    cfg = x.cfg
    if cfg["stages"] != x.S:
        bad("/config/stages", f"{cfg['stages']}, but stages[] has {x.S} entries")
    if cfg["ranks"] != x.R:
        bad("/config/ranks", f"{cfg['ranks']}, but ranks[] has {x.R} entries")
    pp = len({st["rank"] for st in x.stages})  # ranks of one pipeline (interleaved: stages / ranks each)
    if cfg["ranks"] != pp * cfg["dp"] or cfg["stages"] % pp:
        bad("/config/ranks", f"{cfg['ranks']} is not (ranks of a pipeline) x dp = {pp} x {cfg['dp']}, with the "
                             f"{cfg['stages']} stages spread evenly over the pipeline's ranks")
    if cfg["batch"] and cfg["microbatch_size"] and cfg["batch"] != x.M * cfg["microbatch_size"] * cfg["dp"]:
        bad("/config/batch", f"{cfg['batch']} is not microbatches x microbatch_size x dp = {x.M} x "
                             f"{cfg['microbatch_size']} x {cfg['dp']}")
    if ("window" in cfg) != (cfg["schedule"] == "dynamic"):
        bad("/config/window", "given without schedule \"dynamic\"" if "window" in cfg else
            "missing: schedule \"dynamic\" needs a window")
    pred = x.d["prediction"]
    if len(pred["peak_memory_bytes"]) != x.S:
        bad("/prediction/peak_memory_bytes", f"{len(pred['peak_memory_bytes'])} entries for {x.S} stages")
    if len(pred["idle_ms"]) != x.R:
        bad("/prediction/idle_ms", f"{len(pred['idle_ms'])} entries for {x.R} ranks")
    for s, st in enumerate(x.stages):
        if st["index"] != s:
            bad(f"/stages/{s}/index", f"{st['index']}, expected {s} (its position)")
        if not 0 <= st["rank"] < x.R // max(x.cfg["dp"], 1):
            bad(f"/stages/{s}/rank", f"{st['rank']} is not a rank (0..{x.R - 1})")
        missing = [k for k in TRAINING_STAGE_KEYS if k not in st]
        present = [k for k in TRAINING_STAGE_KEYS if k in st]
        if x.training and missing:
            bad(f"/stages/{s}", f"a training stage without {missing}")
        if not x.training and present:
            bad(f"/stages/{s}", f"training fields {present} in an inference file")


def edge_problems(x, bad):
    for k, ed in enumerate(x.edges):
        w = f"/edges/{k}"
        if ed["id"] != k:
            bad(f"{w}/id", f"{ed['id']}, expected {k} (its position)")
        if ed["phase"] == "gradient" and not x.training:
            bad(f"{w}/phase", "a gradient edge in an inference file")
        if not x.valid_stage(ed["producer"]):
            bad(f"{w}/producer", f"{ed['producer']} is not a stage (0..{x.S - 1})")
        if len(set(ed["consumers"])) != len(ed["consumers"]):
            bad(f"{w}/consumers", f"repeats a stage: {ed['consumers']}")
        for c in ed["consumers"]:
            if not x.valid_stage(c):
                bad(f"{w}/consumers", f"{c} is not a stage (0..{x.S - 1})")
            elif x.valid_stage(ed["producer"]):
                forward = ed["phase"] == "activation"
                if forward and c <= ed["producer"]:
                    bad(f"{w}/consumers", f"stage {c} does not come after the producer, stage {ed['producer']} "
                                          f"(activations go forward)")
                if not forward and c >= ed["producer"]:
                    bad(f"{w}/consumers", f"stage {c} does not come before the producer, stage {ed['producer']} "
                                          f"(gradients go back)")


def input_problems(x, bad, s, st):
    for q, inp in enumerate(st["inputs"]):
        w = f"/stages/{s}/inputs/{q} ({inp['name']})"
        src, e = inp["from"], inp["edge"]
        if src == "input":
            if e != -1:
                bad(w, f"a graph input (from \"input\") but edge {e}, expected -1")
            continue
        if not x.valid_stage(src) or src == s:
            bad(w, f"from {src}: not another stage (0..{x.S - 1})")
            continue
        if not 0 <= e < x.E:
            bad(w, f"from stage {src} but edge {e} is not an edge (0..{x.E - 1})")
            continue
        ed = x.edges[e]
        if ed["producer"] != src:
            bad(w, f"from stage {src}, but edge {e}'s producer is stage {ed['producer']}")
        if s not in ed["consumers"]:
            bad(w, f"edge {e}'s consumers {ed['consumers']} do not include stage {s}")
        if ed["value"] != inp["name"]:
            bad(w, f"edge {e} carries '{ed['value']}', not '{inp['name']}'")
        if ed["phase"] != inp["phase"]:
            bad(w, f"phase {inp['phase']}, but edge {e} is a {ed['phase']} edge")
        match = [o for o in x.stages[src]["outputs"] if o["edge"] == e]
        if not match:
            bad(w, f"stage {src} has no output on edge {e}")
            continue
        o = match[0]
        if o["name"] != inp["name"]:
            bad(w, f"stage {src}'s output on edge {e} is '{o['name']}'")
        if o["shape"] != inp["shape"] or o["dtype"] != inp["dtype"]:
            bad(w, f"{inp['dtype']}{inp['shape']}, but stage {src} sends {o['dtype']}{o['shape']}")


def output_problems(x, bad, s, st):
    for q, out in enumerate(st["outputs"]):
        w = f"/stages/{s}/outputs/{q} ({out['name']})"
        e = out["edge"]
        if e == -1:
            if out["to"]:
                bad(w, f"edge -1 but to {out['to']}")
            if not out["graph_output"]:
                bad(w, "neither sent (edge -1) nor a graph output")
        elif not 0 <= e < x.E:
            bad(w, f"edge {e} is not an edge (0..{x.E - 1})")
        else:
            ed = x.edges[e]
            if ed["producer"] != s:
                bad(w, f"edge {e}'s producer is stage {ed['producer']}, not {s}")
            if ed["value"] != out["name"]:
                bad(w, f"edge {e} carries '{ed['value']}'")
            if sorted(out["to"]) != sorted(ed["consumers"]):
                bad(w, f"to {out['to']}, but edge {e}'s consumers are {ed['consumers']}")
            if ed["phase"] != out["phase"]:
                bad(w, f"phase {out['phase']}, but edge {e} is a {ed['phase']} edge")
        p = out["passthrough"]
        if p != -1:
            if not 0 <= p < len(st["inputs"]):
                bad(w, f"passthrough {p} is not an input index (0..{len(st['inputs']) - 1})")
            elif st["inputs"][p]["name"] != out["name"]:
                bad(w, f"passthrough {p} is input '{st['inputs'][p]['name']}'")


def io_problems(x, bad):
    for s, st in enumerate(x.stages):
        input_problems(x, bad, s, st)
        output_problems(x, bad, s, st)
    for k, ed in enumerate(x.edges):  # every consumer of an edge reads it, its producer writes it
        for c in ed["consumers"]:
            if x.valid_stage(c) and not any(i["edge"] == k for i in x.stages[c]["inputs"]):
                bad(f"/edges/{k}", f"consumer stage {c} has no input on edge {k}")
        if x.valid_stage(ed["producer"]) and not any(o["edge"] == k for o in x.stages[ed["producer"]]["outputs"]):
            bad(f"/edges/{k}", f"producer stage {ed['producer']} has no output on edge {k}")


def tied_problems(x, bad):
    for t, ti in enumerate(x.d["tied"]):
        for s in ti["stages"]:
            if not x.valid_stage(s):
                bad(f"/tied/{t}/stages", f"{s} is not a stage (0..{x.S - 1})")
        if len(set(ti["stages"])) != len(ti["stages"]):
            bad(f"/tied/{t}/stages", f"repeats a stage: {ti['stages']}")
    tied = {ti["name"]: sorted(ti["stages"]) for ti in x.d["tied"]}
    for k, rd in enumerate(x.reductions):
        w = f"/reductions/{k}"
        if rd["id"] != k:
            bad(f"{w}/id", f"{rd['id']}, expected {k} (its position)")
        if rd["kind"] == "data_parallel":  # one stage's whole gradient over the dp replicas
            s = rd["stages"][0]
            if x.cfg["dp"] < 2 or len(rd["stages"]) != 1 or rd["offsets"] != [0] or not x.valid_stage(s) \
                    or rd["bytes"] != x.stages[s].get("trainable_bytes"):
                bad(w, f"a data_parallel reduction needs dp > 1 (config.dp is {x.cfg['dp']}), one stage, offset 0 "
                       f"and that stage's trainable_bytes")
            continue
        if len(rd["stages"]) < 2:
            bad(f"{w}/stages", f"{rd['stages']}: a tie is held by two stages or more")
        if len(set(rd["stages"])) != len(rd["stages"]) or not all(x.valid_stage(s) for s in rd["stages"]):
            bad(f"{w}/stages", f"{rd['stages']}: not distinct stages (0..{x.S - 1})")
            continue
        if len(rd["offsets"]) != len(rd["stages"]):
            bad(f"{w}/offsets", f"{len(rd['offsets'])} offsets for {len(rd['stages'])} stages")
        if tied.get(rd["param"]) != sorted(rd["stages"]):
            bad(w, f"parameter '{rd['param']}' on stages {rd['stages']}, but tied lists {tied.get(rd['param'])}")
        for i, s in enumerate(rd["stages"]):
            held = [p for p in x.stages[s].get("parameters", []) if p["name"] == rd["param"]]
            if not held or held[0]["kind"] != "trainable":
                bad(w, f"stage {s} holds no trainable parameter '{rd['param']}'")
            elif i < len(rd["offsets"]) and held[0]["offset"] != rd["offsets"][i]:
                bad(f"{w}/offsets/{i}", f"{rd['offsets'][i]}, but stage {s} keeps '{rd['param']}' at {held[0]['offset']}")


def cross_problems(d):
    P = []

    def bad(where, msg):
        P.append(f"{where}: {msg}")

    x = Doc(d)
    config_problems(x, bad)
    edge_problems(x, bad)
    io_problems(x, bad)
    tied_problems(x, bad)
    rank_of = {}
    pp = x.R // max(x.cfg["dp"], 1)  # ranks of one pipeline; rank r is replica r // pp
    for r, rk in enumerate(x.ranks):
        if rk["rank"] != r:
            bad(f"/ranks/{r}/rank", f"{rk['rank']}, expected {r} (its position)")
        if x.cfg["dp"] > 1 and (rk.get("replica") != r // pp or rk["actions"] != x.ranks[r % pp]["actions"]
                                or rk["stages"] != x.ranks[r % pp]["stages"]):
            bad(f"/ranks/{r}", f"replica {r // pp} of ranks[{r % pp}]: needs \"replica\": {r // pp} and the same "
                               f"stages and actions")
        for s in rk["stages"]:
            if not x.valid_stage(s):
                bad(f"/ranks/{r}/stages", f"{s} is not a stage (0..{x.S - 1})")
                continue
            rank_of.setdefault(s, []).append(r)
            if rk["program"] != x.stages[s]["program"]:
                bad(f"/ranks/{r}/program", f"'{rk['program']}', but stage {s}'s program is '{x.stages[s]['program']}'")
            if x.stages[s]["rank"] != r % pp:
                bad(f"/ranks/{r}/stages", f"runs stage {s}, whose rank is {x.stages[s]['rank']}")
    for s in range(x.S):
        if len(rank_of.get(s, [])) != x.cfg["dp"]:
            bad("/ranks", f"{len(rank_of.get(s, []))} ranks run stage {s}, expected one per pipeline ({x.cfg['dp']})")
    if P:
        return P
    x.ranks, x.R = x.ranks[:pp], pp  # the replicas run the same lists: check and replay one
    for r in range(x.R):
        action_problems(x, r, bad)
    reduction_member_problems(x, bad)
    if not P:
        P.extend((replay_dynamic(x) if x.window else replay(x))["problems"])
    return P


def action_problems(x, r, bad):
    """The rules on one rank's list, each problem at the action that breaks it."""
    acts, w = x.ranks[r]["actions"], f"/ranks/{r}"
    mine = set(x.stages_of_rank(r))
    seen = {}  # (op, stage, mb, peer or reduction) -> [indices]

    def at(a, act):
        return f"{w}/actions/{a} ({act['op']}" + "".join(f" {k} {act[k]}" for k in ("stage", "mb", "peer", "reduction")
                                                         if k in act) + ")"

    for a, act in enumerate(acts):
        op, s, mb = act["op"], act.get("stage"), act.get("mb")
        if op not in INFERENCE_OPS and not x.training:
            bad(at(a, act), f"{op} in an inference schedule (config.mode is \"inference\")")
            continue
        if op == "STEP":
            if a != len(acts) - 1:
                bad(at(a, act), "STEP is not the rank's last action")
            seen.setdefault(("STEP",), []).append(a)
            continue
        if s not in mine:
            bad(at(a, act), f"stage {s} does not run on rank {r} (it runs {sorted(mine)})")
            continue
        if mb is not None and not 0 <= mb < x.M:
            bad(at(a, act), f"microbatch {mb} is not in 0..{x.M - 1}")
            continue
        if op in SENDS or op in RECVS:
            phase = SENDS.get(op) or RECVS.get(op)
            allowed = x.peers(s, phase, "to" if op in SENDS else "from")
            if act["peer"] not in allowed:
                bad(at(a, act), f"peer {act['peer']}: stage {s} {'sends' if op in SENDS else 'receives'} no "
                                f"{phase}s {'to' if op in SENDS else 'from'} it (its peers: {allowed or 'none'})")
                continue
        if op in COLLECTIVES:
            red = act["reduction"]
            if not 0 <= red < len(x.reductions) or s not in x.reductions[red]["stages"]:
                bad(at(a, act), f"stage {s} is not a member of reduction {red}")
                continue
            transmit = x.reductions[red].get("mode") == "transmit"
            if (op == "ALLREDUCE") == transmit:
                bad(at(a, act), f"reduction {red} is of mode {x.reductions[red].get('mode')}: it takes "
                                f"{'REDUCE and BROADCAST' if transmit else 'ALLREDUCE'}")
                continue
        key = (op, s, mb, act.get("peer", act.get("reduction")))
        seen.setdefault(key, []).append(a)
    order_problems(x, r, acts, seen, at, bad)
    if x.training and x.window:
        for s in sorted(mine):
            if x.stages[s]["stash_slots"] < min(x.window, x.M):
                bad(f"/stages/{s}/stash_slots", f"{x.stages[s]['stash_slots']}, but window {x.window} lets the stage "
                                               f"hold {min(x.window, x.M)} microbatches at once (the window rule)")
    elif x.training:
        stash_problems(x, r, acts, at, bad)


def order_problems(x, r, acts, seen, at, bad):
    """Once each, and in order: F < B < W, receives before, sends after."""
    w = f"/ranks/{r}"

    def once(key, what):
        idx = seen.get(key, [])
        if len(idx) != 1:
            bad(f"{w}/actions", f"{what} appears {len(idx)} times" + (f" (at {idx})" if idx else "") + ", expected once")
        return idx[0] if len(idx) == 1 else None

    for s in x.stages_of_rank(r):
        last_w, first_f = -1, None
        for m in range(x.M):
            made = {"activation": once(("F", s, m, None), f"F(stage {s}, mb {m})")}
            if made["activation"] is not None:
                first_f = min(first_f, made["activation"]) if first_f is not None else made["activation"]
            if x.training:
                made["gradient"] = once(("B", s, m, None), f"B(stage {s}, mb {m})")
                wi = once(("W", s, m, None), f"W(stage {s}, mb {m})")
                f, b = made["activation"], made["gradient"]
                if f is not None and b is not None and b < f:
                    bad(at(b, acts[b]), f"B of microbatch {m} comes before its F (action {f})")
                if b is not None and wi is not None and wi < b:
                    bad(at(wi, acts[wi]), f"W of microbatch {m} comes before its B (action {b})")
                last_w = max(last_w, wi if wi is not None else -1)
            for phase, comp in made.items():
                for p in x.peers(s, phase, "from"):
                    rv = once((f"RECV_{MAKER[phase]}", s, m, p), f"RECV_{MAKER[phase]}(stage {s}, mb {m} <- stage {p})")
                    if comp is not None and rv is not None and rv > comp:
                        bad(at(rv, acts[rv]), f"the receive is posted after the {MAKER[phase]} that needs it (action {comp})")
                for c in x.peers(s, phase, "to"):
                    sd = once((f"SEND_{MAKER[phase]}", s, m, c), f"SEND_{MAKER[phase]}(stage {s}, mb {m} -> stage {c})")
                    if comp is not None and sd is not None and sd < comp:
                        bad(at(sd, acts[sd]), f"the send comes before the {MAKER[phase]} that makes its data (action {comp})")
        for k, rd in enumerate(x.reductions):
            if s not in rd["stages"]:
                continue
            transmit = rd.get("mode") == "transmit"
            ai = once(("REDUCE" if transmit else "ALLREDUCE", s, None, k),
                      f"{'REDUCE' if transmit else 'ALLREDUCE'}(stage {s}, reduction {k})")
            if ai is not None and ai < last_w:
                bad(at(ai, acts[ai]), f"{acts[ai]['op']} before the stage's last W (action {last_w}): its gradients "
                                      f"are not complete")
            if transmit:
                bi = once(("BROADCAST", s, None, k), f"BROADCAST(stage {s}, reduction {k})")
                if bi is not None and first_f is not None and bi > first_f:
                    bad(at(bi, acts[bi]), f"BROADCAST after the stage's first F (action {first_f}), which reads the "
                                          f"parameter")
    if x.training:
        once(("STEP",), "STEP")


def stash_problems(x, r, acts, at, bad):
    held = {}
    for a, act in enumerate(acts):
        s = act.get("stage")
        if act["op"] == "F":
            held[s] = held.get(s, 0) + 1
            slots = x.stages[s]["stash_slots"]
            if held[s] > slots:
                bad(at(a, act), f"stage {s} would hold {held[s]} microbatches at once, its program has {slots} "
                                f"stash slots")
                return
        elif act["op"] == "W":
            held[s] = held.get(s, 0) - 1


def reduction_member_problems(x, bad):
    for k, rd in enumerate(x.reductions):
        for s in rd["stages"]:
            r = x.stages[s]["rank"]
            for op in (("REDUCE", "BROADCAST") if rd.get("mode") == "transmit" else ("ALLREDUCE",)):
                n = sum(1 for act in x.ranks[r]["actions"] if act["op"] == op and act.get("stage") == s
                        and act.get("reduction") == k)
                if n == 0:
                    bad(f"/reductions/{k}", f"member stage {s} (rank {r}) never runs {op} of it")


def replay(x):
    """Runs every list in order (see the module doc). Returns the problems (a deadlock) and the
    prediction: step_ms, busy_ms, idle_ms and collective_ms per rank, in_flight per stage."""
    cm = x.d["prediction"]["cost_model"]
    bw = cm["link_gbytes_per_s"] * 1e9
    lat = cm["link_latency_us"] * 1e-3
    cost = {}
    for s, st in enumerate(x.stages):
        cost[("F", s)] = st["predicted_forward_ms"]
        cost[("B", s)] = st.get("predicted_backward_ms", 0)
        cost[("W", s)] = st.get("predicted_weight_ms", 0)
    pos, clock, busy, coll = [0] * x.R, [0.0] * x.R, [0.0] * x.R, [0.0] * x.R
    sent = {}         # (phase, from, to, mb) -> when
    arrived = {}      # collective key -> {member: arrival time}
    members = {("STEP",): set(range(x.R))}
    for k, rd in enumerate(x.reductions):
        for op in COLLECTIVES:
            members[(op, k)] = set(rd["stages"])

    def data_ready(act):
        phase = COMPUTE.get(act["op"])
        if phase is None:
            return 0.0
        t = 0.0
        for p in x.peers(act["stage"], phase, "from"):
            when = sent.get((phase, p, act["stage"], act["mb"]))
            if when is None:
                return None
            ms = lat + (x.pair_bytes(phase, p, act["stage"]) / bw * 1e3 if bw > 0 else 0)
            t = max(t, when + ms)
        return t

    progress = True
    while progress:
        progress = False
        for r in range(x.R):
            acts = x.ranks[r]["actions"]
            while pos[r] < len(acts):
                act = acts[pos[r]]
                if act["op"] in COLLECTIVES or act["op"] == "STEP":
                    key = ("STEP",) if act["op"] == "STEP" else (act["op"], act["reduction"])
                    who = r if act["op"] == "STEP" else act["stage"]
                    got = arrived.setdefault(key, {})
                    if who not in got:
                        got[who] = clock[r]
                        progress = True
                    if set(got) != members[key]:
                        break
                    clock[r] = max(got.values()) + x.collective_ms(act["op"], act.get("reduction"))
                    coll[r] += clock[r] - got[who]
                    if act["op"] == "STEP":  # then the optimizer's step on each of the rank's stages
                        clock[r] += x.optimizer_ms(r)
                        busy[r] += x.optimizer_ms(r)
                    pos[r] += 1
                    continue
                t = data_ready(act)
                if t is None:
                    break
                start = max(clock[r], t)
                d = cost.get((act["op"], act.get("stage")), 0.0)
                clock[r] = start + d
                busy[r] += d
                if act["op"] in SENDS:
                    sent[(SENDS[act["op"]], act["stage"], act["peer"], act["mb"])] = clock[r]
                pos[r] += 1
                progress = True
    stuck = [r for r in range(x.R) if pos[r] < len(x.ranks[r]["actions"])]
    problems = []
    for r in stuck:
        act = x.ranks[r]["actions"][pos[r]]
        what = (f"every member of its {act['op']}" if act["op"] in COLLECTIVES or act["op"] == "STEP" else
                f"the {COMPUTE[act['op']]}s of mb {act['mb']} from stage(s) {x.peers(act['stage'], COMPUTE[act['op']], 'from')}")
        problems.append(f"/ranks/{r}/actions/{pos[r]} ({act['op']}" + (f" stage {act['stage']}" if "stage" in act else "")
                        + (f" mb {act['mb']}" if "mb" in act else "") + f"): deadlock: waits forever for {what}")
    step = max(clock) if clock else 0.0
    held, in_flight = {}, [0] * x.S
    for r in range(x.R):
        for act in x.ranks[r]["actions"]:
            s = act.get("stage")
            if act["op"] == "F":
                held[s] = held.get(s, 0) + 1
                in_flight[s] = max(in_flight[s], held[s])
            if act["op"] == ("W" if x.training else "F"):
                held[s] -= 1
    return {"problems": problems, "step_ms": step, "busy_ms": busy, "idle_ms": [step - b for b in busy],
            "bubble_fraction": 1 - sum(busy) / (x.R * step) if step > 0 else 0.0, "in_flight": in_flight,
            "collective_ms": coll}


def replay_dynamic(x):
    """The dynamic schedule's replay (see the module doc); returns what replay() returns."""
    K = min(x.window, x.M)
    cm = x.d["prediction"]["cost_model"]
    bw, lat = cm["link_gbytes_per_s"] * 1e9, cm["link_latency_us"] * 1e-3
    cost = {}
    for s, st in enumerate(x.stages):
        cost.update({("F", s): st["predicted_forward_ms"], ("B", s): st.get("predicted_backward_ms", 0),
                     ("W", s): st.get("predicted_weight_ms", 0)})
    acts = [rk["actions"] for rk in x.ranks]
    where, sends, queue = {}, {}, []
    for r, lst in enumerate(acts):
        queue.append([i for i, a in enumerate(lst) if a["op"] in RECVS])
        for i, a in enumerate(lst):
            if a["op"] in ("F", "B", "W"):
                where[(a["stage"], a["op"], a["mb"])] = i
            elif a["op"] in SENDS:
                sends.setdefault((a["stage"], MAKER[SENDS[a["op"]]], a["mb"]), []).append(i)
    done = [[False] * len(lst) for lst in acts]
    clock, busy, parked, coll = [0.0] * x.R, [0.0] * x.R, [None] * x.R, [0.0] * x.R
    next_f, next_w, did = [0] * x.S, [0] * x.S, set()
    sent, fin, arrived = {}, {}, {}
    members = {("STEP",): set(range(x.R))}
    for k, rd in enumerate(x.reductions):
        for op in COLLECTIVES:
            members[(op, k)] = set(rd["stages"])

    def tol(t):
        return 1e-9 * (abs(t) + 1.0)

    def key(a):
        return ("STEP",) if a["op"] == "STEP" else (a["op"], a["reduction"])

    def flush(r):
        while queue[r]:
            i = queue[r].pop(0)
            a = acts[r][i]
            if a["op"] in SENDS:
                sent[(SENDS[a["op"]], a["stage"], a["peer"], a["mb"])] = clock[r]
            done[r][i] = True

    def allowed(r):
        lst = acts[r]
        barrier = next((i for i, a in enumerate(lst) if not done[r][i] and (a["op"] in COLLECTIVES or a["op"] == "STEP")),
                       len(lst))
        out = []
        for s in x.stages_of_rank(r):
            nf = next_f[s]
            if nf < x.M and nf < (next_w[s] if x.training else nf) + K:
                out.append(where[(s, "F", nf)])
            if x.training:
                out += [where[(s, "B", m)] for m in range(next_w[s], nf) if (s, "B", m) not in did]
                if next_w[s] < x.M and (s, "B", next_w[s]) in did:
                    out.append(where[(s, "W", next_w[s])])
        out = [i for i in out if i < barrier]
        if barrier < len(lst) and all(done[r][:barrier]):
            out.append(barrier)
        return sorted(out)

    def ready(a):
        if a["op"] not in COMPUTE:
            return 0.0
        phase, s, m, t = COMPUTE[a["op"]], a["stage"], a["mb"], 0.0
        for p in x.peers(s, phase, "from"):
            when = sent.get((phase, p, s, m))
            if when is None:
                return None
            t = max(t, when + lat + (x.pair_bytes(phase, p, s) / bw * 1e3 if bw > 0 else 0))
        for c in x.peers(s, phase, "to"):  # the slot m takes: consumers done with m - slots
            slots = min(K + (c > s), x.M)  # every stage holds K; a later consumer's value has one more
            if m < slots:
                continue
            if (c, m - slots) not in fin:
                return None
            t = max(t, fin[(c, m - slots)])
        return t

    def collective(r, i):
        a = acts[r][i]
        got = arrived.setdefault(key(a), {})
        got[r if a["op"] == "STEP" else a["stage"]] = clock[r]
        last = max(j for j, b in enumerate(acts[r]) if b["op"] == a["op"] and key(b) == key(a))
        if a["op"] != "STEP" and i != last:
            done[r][i] = True
            return
        parked[r] = i
        if set(got) != members[key(a)]:
            return
        t = max(got.values()) + x.collective_ms(a["op"], a.get("reduction"))
        for q in range(x.R):
            if parked[q] is not None and key(acts[q][parked[q]]) == key(a):
                coll[q] += t - clock[q]  # from reaching it (the rank's clock while parked) to the end
                opt = x.optimizer_ms(q) if a["op"] == "STEP" else 0.0
                clock[q], done[q][parked[q]], parked[q] = t + opt, True, None
                busy[q] += opt
                flush(q)

    def run(r, i, t):
        a = acts[r][i]
        clock[r] = t
        if a["op"] in COLLECTIVES or a["op"] == "STEP":
            collective(r, i)
            return
        s, m, d = a["stage"], a["mb"], cost[(a["op"], a["stage"])]
        clock[r] = t + d
        busy[r] += d
        did.add((s, a["op"], m))
        while next_f[s] < x.M and (s, "F", next_f[s]) in did:
            next_f[s] += 1
        while next_w[s] < x.M and (s, "W", next_w[s]) in did:
            next_w[s] += 1
        if a["op"] == ("W" if x.training else "F"):
            fin[(s, m)] = t + d
        done[r][i] = True
        queue[r] += sends.get((s, a["op"], m), [])
        flush(r)

    for r in range(x.R):
        flush(r)
    while True:
        best = None
        for r in range(x.R):
            if parked[r] is not None or all(done[r]):
                continue
            pick = None
            for i in allowed(r):
                t = ready(acts[r][i])
                if t is not None and (pick is None or max(t, clock[r]) < pick[0] - tol(pick[0])):
                    pick = (max(t, clock[r]), i)
            if pick and (best is None or pick[0] < best[0] - tol(best[0])):
                best = (pick[0], r, pick[1])
        if best is None:
            break
        run(best[1], best[2], best[0])
    problems = [f"/ranks/{r}: the dynamic schedule (window {x.window}) cannot go on: {sum(done[r])} of "
                f"{len(done[r])} actions ran" for r in range(x.R) if not all(done[r])]
    step = max(clock) if clock else 0.0
    return {"problems": problems, "step_ms": step, "busy_ms": busy, "idle_ms": [step - b for b in busy],
            "bubble_fraction": 1 - sum(busy) / (x.R * step) if step > 0 else 0.0, "in_flight": [K] * x.S,
            "collective_ms": coll}


def main():
    ap = argparse.ArgumentParser(description="Validate a pippyc schedule.json.")
    ap.add_argument("file", help="OUT/schedule.json")
    ap.add_argument("--schema", default=DEFAULT_SCHEMA, help="the JSON Schema (default: schemas/schedule.schema.json)")
    ap.add_argument("-q", "--quiet", action="store_true", help="print nothing when ok")
    ap.add_argument("--predict", action="store_true", help="print the replay's prediction as JSON when ok")
    args = ap.parse_args()
    try:
        with open(args.schema) as f:
            schema = json.load(f)
    except (OSError, ValueError) as e:
        print(f"validate_schedule.py: error: cannot read the schema {args.schema}: {e}", file=sys.stderr)
        return 2
    try:
        with open(args.file) as f:
            doc = json.load(f)
    except OSError as e:
        print(f"{args.file}: cannot read: {e}")
        return 1
    except ValueError as e:
        print(f"{args.file}: not JSON: {e}")
        return 1
    problems = schema_problems(doc, schema)
    if problems:
        problems = [f"schema: {p}" for p in problems]
        problems.append("(cross-references not checked until the schema errors are fixed)")
    else:
        problems = cross_problems(doc)
    if problems:
        for p in problems:
            print(f"{args.file}: {p}")
        print(f"{len([p for p in problems if not p.startswith('(')])} problem(s)")
        return 1
    if args.predict:
        x = Doc(doc)
        pred = replay_dynamic(x) if x.window else replay(x)
        del pred["problems"]
        print(json.dumps(pred))
    elif not args.quiet:
        print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
