// Token selection on the GPU, so a decode step reads back a few bytes instead of the whole
// vocabulary's logits.
// - `penalize`: the repetition penalty on the listed token ids (divide positive logits, multiply
//   negative ones), as llama.cpp applies it;
// - `top_one`: the largest logit strictly below the previous pick in the order
//   (logit descending, id ascending); called k times it yields the top k, ties by lower id.

struct Meta {
    n: u32,         // vocabulary size
    count: u32,     // penalize: number of ids; top_one: the pick's slot (0 .. k)
    penalty: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> params: Meta;
@group(0) @binding(1) var<storage, read> ids: array<u32>;              // penalize: the ids
@group(0) @binding(2) var<storage, read_write> logits: array<f32>;     // (n)
@group(0) @binding(3) var<storage, read_write> picks: array<u32>;      // (k, 2): id, logit bits

@compute @workgroup_size(64)
fn penalize(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if (i >= params.count) {
        return;
    }
    let id = ids[i];
    if (id < params.n) {
        let l = logits[id];
        logits[id] = select(l * params.penalty, l / params.penalty, l > 0.0);
    }
}

var<workgroup> best_value: array<f32, 256>;
var<workgroup> best_id: array<u32, 256>;

// (value, id) ranks above (other_value, other_id)?
fn ranks_above(value: f32, id: u32, other_value: f32, other_id: u32) -> bool {
    return value > other_value || (value == other_value && id < other_id);
}

// One workgroup.
@compute @workgroup_size(256)
fn top_one(@builtin(local_invocation_index) local: u32) {
    let slot = params.count;
    var has_bound = slot > 0u;
    var bound_value = 0.0;
    var bound_id = 0u;
    if (has_bound) {
        bound_id = picks[2u * (slot - 1u)];
        bound_value = bitcast<f32>(picks[2u * (slot - 1u) + 1u]);
    }
    var value = -3.0e38;
    var id = 0xFFFFFFFFu;
    for (var i = local; i < params.n; i += 256u) {
        let l = logits[i];
        let below = !has_bound || ranks_above(bound_value, bound_id, l, i);
        if (below && (id == 0xFFFFFFFFu || ranks_above(l, i, value, id))) {
            value = l;
            id = i;
        }
    }
    best_value[local] = value;
    best_id[local] = id;
    workgroupBarrier();
    for (var stride = 128u; stride > 0u; stride /= 2u) {
        if (local < stride) {
            let other = local + stride;
            if (best_id[other] != 0xFFFFFFFFu
                && (best_id[local] == 0xFFFFFFFFu
                    || ranks_above(best_value[other], best_id[other], best_value[local], best_id[local]))) {
                best_value[local] = best_value[other];
                best_id[local] = best_id[other];
            }
        }
        workgroupBarrier();
    }
    if (local == 0u) {
        picks[2u * slot] = best_id[0];
        picks[2u * slot + 1u] = bitcast<u32>(best_value[0]);
    }
}
