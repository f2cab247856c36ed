/* decode_append.cl: writes k_new/v_new (B, seqlen_new, H_kv, d) into the K/V cache in place, at
 * positions cached_len(b) ... + seqlen_new - 1 of each sequence, with the rotary embedding applied
 * to k_new when ROTARY is on (V is copied as is). One work-item per element, on a grid of
 * (seqlen_new * d rounded up, H_kv, B); it runs before decode_split, which then sees the new keys.
 * A sequence whose cache row or page is out of range writes nothing (decode_common.cl's guards).
 * An fp8 cache (CACHE_FP8) stores fp8(x / descale) with the sequence's descale of head hk: the
 * codec's encoder (fp8_codec.cl), as quantize_fp8 and the host's to_fp8 round. */

__kernel void decode_append(__global CACHE_T* k_cache, __global CACHE_T* v_cache,
                            __global const STORAGE_T* k_new, __global const STORAGE_T* v_new,
                            __global const int* cache_seqlens, __global const int* block_table,
                            __global const int* batch_idx, __global const float* rot_cos,
                            __global const float* rot_sin, const DecodeArgs args CACHE_DESCALE_PARAMS) {
  const DecodeArgs* d = &args;
  const int hk = get_global_id(1), b = get_global_id(2);
  const long idx = get_global_id(0);
  const int t = (int)(idx / HEAD_DIM), c = (int)(idx % HEAD_DIM);
  if (t >= d->seqlen_new) return;
  const int row = cache_row(d, batch_idx, b);
  if (row < 0) return;
  const int pos = cached_len(d, cache_seqlens, b) + t; /* < capacity by the clamp */
#if PAGED
  const int slot = page_entry(d, block_table, b, pos / d->page_size);
  if (slot < 0) return;
#else
  (void)block_table;
  const int slot = row;
#endif
  long k_dst, v_dst;
  kv_bases(d, slot, pos, hk, &k_dst, &v_dst);
  const long k_src = d->kn_offset + (long)b * d->kn_batch_stride + (long)t * d->kn_seq_stride + (long)hk * d->kn_head_stride;
  const long v_src = d->vn_offset + (long)b * d->vn_batch_stride + (long)t * d->vn_seq_stride + (long)hk * d->vn_head_stride;
#if ROTARY
  const float kx = rotated(k_new, k_src, c, pos, d, rot_cos, rot_sin);
#else
  (void)rot_cos;
  (void)rot_sin;
  const float kx = LOAD_ELEM(k_new, k_src + c);
#endif
#if CACHE_FP8
  k_cache[k_dst + c] = CACHE_ENCODE(kx / CACHE_DESCALE(k_descale, d, b, hk));
  v_cache[v_dst + c] = CACHE_ENCODE(LOAD_ELEM(v_new, v_src + c) / CACHE_DESCALE(v_descale, d, b, hk));
#else
  STORE_ELEM(k_cache, k_dst + c, kx);
  STORE_ELEM(v_cache, v_dst + c, LOAD_ELEM(v_new, v_src + c));
#endif
}
