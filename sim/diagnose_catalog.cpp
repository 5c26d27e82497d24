// The catalog of integration bugs moesim diagnose tests a capture against, each a simulator
// configuration (../shared/notes/ep-semantics.md names where each one was seen). Order matters:
// ties go to the earlier entry, so the correct integration comes first and models that take
// parameters from the capture itself come last.
#include "diagnose.hpp"

namespace moesim::sim {

namespace {

Hypothesis make(const std::string& key, const std::string& title, SimOptions o) {
  Hypothesis h;
  h.key = key;
  h.title = title;
  h.options = std::move(o);
  return h;
}

}  // namespace

std::vector<Hypothesis> catalog(const TraceConfig& c, DispatchModel lib, const SimOptions& base) {
  SimOptions ok = base;
  ok.dispatch.model = lib;
  ok.dispatch.negative = NegativeIds::skip;
  ok.dispatch.overflow = Overflow::drop;  // never triggers: the correct integration is sized right
  ok.dispatch.max_total_recv = 0;
  ok.dispatch.shuffle = false;
  ok.consumer = ConsumerOptions{};
  ok.consumer.model = default_consumer(lib);
  ok.combine = default_combine(lib, c.mori.kernel_type);
  const bool rank_rows = rank_dedup(lib);
  const std::string lib_name(name(lib));

  std::vector<Hypothesis> out;
  auto add = [&](Hypothesis h) { out.push_back(std::move(h)); return &out.back(); };

  Hypothesis correct = make("correct", "the correct integration: " + judge_pairing(lib, ok.consumer, ok.combine).correct_pairings, ok);
  correct.correct = true;
  add(correct);

  // Router weights applied twice, or never.
  {
    SimOptions o = ok;
    if (rank_rows) {
      o.combine = CombineModel::weighted;
    } else {
      o.consumer.model = ConsumerModel::target_expert;
      o.combine = CombineModel::weighted;
    }
    add(make("weights-twice", "router weights applied twice: a weighting consumer and a weighted combine", o));
    SimOptions n = ok;
    Hypothesis never = make("weights-never", "router weights never applied: an unweighted consumer and an unweighted combine", n);
    if (rank_rows) {
      never.mutation = Mutation::weights_one;
    } else {
      never.options.consumer.model = ConsumerModel::per_expert;
      never.options.combine = CombineModel::pair_sum;
    }
    add(never);
  }

  // The seed's all-k consumer on the library's rows, then the seed's whole flow on
  // per-(token, expert) rows as its buffers showed them.
  for (NonLocal nl : {NonLocal::wrap, NonLocal::clamp}) {
    SimOptions o = ok;
    o.consumer.model = ConsumerModel::all_k;
    o.consumer.non_local = nl;
    add(make("all-k-" + std::string(name(nl)), "all-k consumer on " + lib_name + " rows: every id of a row computed, non-local ids " +
                                                   (nl == NonLocal::wrap ? "wrapped" : "clamped") + " onto local experts", o));
  }
  for (NonLocal nl : {NonLocal::wrap, NonLocal::clamp, NonLocal::mask}) {
    SimOptions o = ok;
    o.dispatch.model = DispatchModel::pairs;
    o.consumer.model = ConsumerModel::all_k;
    o.consumer.non_local = nl;
    o.combine = CombineModel::rank_sum;
    auto* h = add(make("seed-all-k-" + std::string(name(nl)),
                       "the seed's flow: per-(token, expert) rows, all-k consumer (non-local ids " + std::string(name(nl)) +
                           "), rank-sum combine", o));
    h->structural = true;
  }

  // Reading the whole receive buffer instead of total_recv rows (AITER num_local_tokens not passed).
  {
    SimOptions o = ok;
    o.consumer.whole_buffer = true;
    if (reads_stale_rows(o.consumer, o.dispatch.model))
      add(make("whole-buffer", "the consumer reads the whole receive buffer, not the first total_recv rows", o));
    SimOptions s = ok;
    s.dispatch.model = DispatchModel::pairs;
    s.consumer.model = ConsumerModel::all_k;
    s.consumer.non_local = NonLocal::wrap;
    s.consumer.whole_buffer = true;
    s.combine = CombineModel::rank_sum;
    auto* h = add(make("seed-all-k-wrap-whole-buffer", "the seed's flow (all-k, wrap) reading the whole receive buffer", s));
    h->structural = true;
  }

  // Id spaces mixed up.
  {
    SimOptions o = ok;
    if (id_space(lib) != IdSpace::global) o.dispatch.model = DispatchModel::mori, o.combine = CombineModel::rank_sum;
    o.consumer.model = ConsumerModel::deepep_local;
    auto* h = add(make("global-as-local", "global ids read as local (deepep-local consumer on " +
                                              std::string(name(o.dispatch.model)) + " rows)", o));
    h->structural = o.dispatch.model != lib;
    SimOptions l = ok;
    l.dispatch.model = DispatchModel::deepep_ht;
    l.consumer.model = ConsumerModel::aiter_mask;
    l.combine = CombineModel::rank_sum;
    h = add(make("local-as-global", "local ids read as global (aiter-mask consumer on deepep-ht rows)", l));
    h->structural = lib != DispatchModel::deepep_ht;
  }

  // MORI's -1 truncation, and a silently overflowing receive buffer.
  if (lib == DispatchModel::mori) {
    SimOptions o = ok;
    o.dispatch.negative = NegativeIds::rank0;
    add(make("minus-one-to-rank0", "-1 ids sent to rank 0 (MORI before mid-2026: -1 / E_local truncates to 0)", o))
        ->structural = true;
  }
  if (lib == DispatchModel::mori || lib == DispatchModel::pairs) {
    SimOptions o = ok;
    o.dispatch.max_total_recv = c.mori.max_total_recv_tokens;  // 0: taken from the captured buffer size
    auto* h = add(make("silent-overflow", "receive buffer overflows silently, rows past capacity dropped (mori issue 356)", o));
    h->structural = true;
    h->mutation = Mutation::capacity;
  }

  {
    Hypothesis h = make("combine-recv-ids", "combine given the received ids instead of the rank's own routing (mori issue 475)", ok);
    h.mutation = Mutation::combine_recv_ids;
    add(h);
  }

  // Fitted to the capture: the rows it duplicates or lacks, the one row every source shows.
  {
    Hypothesis h = make("rows-duplicated-or-dropped", "receive rows duplicated or dropped by the transport (mori issue 507)", ok);
    h.mutation = Mutation::fit_rows;
    h.structural = h.fitted = true;
    add(h);
    Hypothesis w = make("warmup-identical-tokens", "a dummy warm-up batch: every source token identical", ok);
    w.mutation = Mutation::warmup_x;
    w.structural = w.fitted = true;
    add(w);
  }
  return out;
}

}  // namespace moesim::sim
