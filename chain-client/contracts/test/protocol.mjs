// The protocol's byte layouts in JavaScript, written from docs/PROTOCOL.md and the contracts README (not from the
// contract), so the tests compare two implementations: EIP-712 digests (through viem's own EIP-712 code), channel
// id, keyset encoding, signatures and the Merkle sum tree of receipt batches.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { p256 } from '@noble/curves/p256';
import { secp256k1 } from '@noble/curves/secp256k1';
import { bytesToHex, concat, encodeAbiParameters, hashTypedData, hexToBytes, keccak256, sha256, toHex } from 'viem';

const here = dirname(fileURLToPath(import.meta.url));
/** Directory of the committed JSON vectors. */
export const VECTORS = join(here, '..', '..', 'tests', 'vectors');

/** Reads one vector file. */
export function vector(name) {
  return JSON.parse(readFileSync(join(VECTORS, `${name}.json`), 'utf8'));
}

/** `0x`-prefixed hex of a vector's bare hex string. */
export const hx = (s) => (s.startsWith('0x') ? s : `0x${s}`);

const RECEIPT_FIELDS = [
  ['version', 'uint32'],
  ['channelId', 'bytes32'],
  ['callSeq', 'uint64'],
  ['hostKeyId', 'bytes32'],
  ['keysetHash', 'bytes32'],
  ['modelId', 'string'],
  ['weightHash', 'bytes32'],
  ['requestHash', 'bytes32'],
  ['responseHash', 'bytes32'],
  ['requestCtHash', 'bytes32'],
  ['responseCtHash', 'bytes32'],
  ['tokensIn', 'uint64'],
  ['tokensOut', 'uint64'],
  ['priceIn', 'uint128'],
  ['priceOut', 'uint128'],
  ['amount', 'uint128'],
  ['cumulative', 'uint128'],
  ['prevReceiptHash', 'bytes32'],
  ['timestamp', 'uint64'],
  ['seed', 'uint64'],
  ['engineBuild', 'bytes32'],
  ['deterministic', 'bool'],
];

/** EIP-712 types of PROTOCOL.md section 5 (protocol version 2). */
export const TYPES = {
  Receipt: RECEIPT_FIELDS.map(([name, type]) => ({ name, type })),
  ChannelState: [
    { name: 'channelId', type: 'bytes32' },
    { name: 'turn', type: 'uint64' },
    { name: 'cumulative', type: 'uint128' },
    { name: 'escrowCap', type: 'uint128' },
    { name: 'lastReceiptHash', type: 'bytes32' },
    { name: 'tenant', type: 'address' },
    { name: 'host', type: 'address' },
    { name: 'isFinal', type: 'bool' },
  ],
};

/** The EIP-712 domain of a deployment. */
export const domain = (chainId, settlement) => ({ name: 'dait', version: '1', chainId, verifyingContract: settlement });

/** A vector receipt's JSON fields as a typed receipt (bigints, 0x hex). */
export function receiptFromVector(j) {
  return {
    version: j.version,
    channelId: hx(j.channel_id),
    callSeq: BigInt(j.call_seq),
    hostKeyId: hx(j.host_key_id),
    keysetHash: hx(j.keyset_hash),
    modelId: j.model_id,
    weightHash: hx(j.weight_hash),
    requestHash: hx(j.request_hash),
    responseHash: hx(j.response_hash),
    requestCtHash: hx(j.request_ct_hash),
    responseCtHash: hx(j.response_ct_hash),
    tokensIn: BigInt(j.tokens_in),
    tokensOut: BigInt(j.tokens_out),
    priceIn: BigInt(j.price_in),
    priceOut: BigInt(j.price_out),
    amount: BigInt(j.amount),
    cumulative: BigInt(j.cumulative),
    prevReceiptHash: hx(j.prev_receipt_hash),
    timestamp: BigInt(j.timestamp),
    seed: BigInt(j.seed),
    engineBuild: hx(j.engine_build),
    deterministic: j.deterministic,
  };
}

/** A vector channel state's JSON fields as a typed version 2 state (bigints, 0x hex). */
export function stateFromVector(j) {
  return {
    channelId: hx(j.channel_id),
    turn: BigInt(j.turn),
    cumulative: BigInt(j.cumulative),
    escrowCap: BigInt(j.escrow_cap),
    lastReceiptHash: hx(j.last_receipt_hash),
    tenant: hx(j.tenant),
    host: hx(j.host),
    isFinal: j.is_final,
  };
}

/** A receipt as the contract's `Receipt` struct argument: `modelId` replaced by its keccak. */
export function receiptArg(r) {
  const { modelId, ...rest } = r;
  return { ...rest, modelIdHash: keccak256(new TextEncoder().encode(modelId)) };
}

/** The receipt hash (EIP-712 digest) through viem's EIP-712 implementation. */
export const receiptDigest = (dom, r) =>
  hashTypedData({ domain: dom, types: { Receipt: TYPES.Receipt }, primaryType: 'Receipt', message: r });

/** The same digest from the struct words directly (fast path for large batches; checked equal in the tests). */
export function receiptDigestFast(separator, r) {
  const words = encodeAbiParameters(
    [{ type: 'bytes32' }, ...RECEIPT_FIELDS.map(([, type]) => ({ type: type === 'string' ? 'bytes32' : type }))],
    [RECEIPT_TYPEHASH, ...RECEIPT_FIELDS.map(([name]) => (name === 'modelId' ? keccak256(new TextEncoder().encode(r.modelId)) : r[name]))],
  );
  return keccak256(concat(['0x1901', separator, keccak256(words)]));
}

/** keccak of the receipt type string. */
export const RECEIPT_TYPEHASH = keccak256(
  new TextEncoder().encode(`Receipt(${RECEIPT_FIELDS.map(([n, t]) => `${t} ${n}`).join(',')})`),
);

/** The EIP-712 domain separator. */
export function domainSeparator(dom) {
  const t = keccak256(
    new TextEncoder().encode('EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)'),
  );
  return keccak256(
    encodeAbiParameters(
      [{ type: 'bytes32' }, { type: 'bytes32' }, { type: 'bytes32' }, { type: 'uint256' }, { type: 'address' }],
      [t, keccak256(toHex('dait')), keccak256(toHex('1')), BigInt(dom.chainId), dom.verifyingContract],
    ),
  );
}

/** A channel state's EIP-712 digest (version 2 type). */
export const stateDigest = (dom, s) =>
  hashTypedData({ domain: dom, types: { ChannelState: TYPES.ChannelState }, primaryType: 'ChannelState', message: s });

/** Channel id (PROTOCOL.md section 4): `keccak(word(chainId) || word(settlement) || word(tenant) || word(host) || salt)`. */
export const channelId = (chainId, settlement, tenant, host, salt) =>
  keccak256(
    encodeAbiParameters(
      [{ type: 'uint256' }, { type: 'address' }, { type: 'address' }, { type: 'address' }, { type: 'bytes32' }],
      [BigInt(chainId), settlement, tenant, host, salt],
    ),
  );

const P256_N = p256.CURVE.n;
const SECP256K1_N = secp256k1.CURVE.n;
const word = (n) => toHex(n, { size: 32 });
/** A secret key as the bytes noble expects. */
const secretBytes = (secret) => hexToBytes(secret);

/** Host signature (P-256, prehashed digest, low s): `{ r, s }` as 32-byte hex words. */
export function hostSign(secret, digest) {
  const sig = p256.sign(hexToBytes(digest), secretBytes(secret), { lowS: true, prehash: false });
  return { r: word(sig.r), s: word(sig.s) };
}

/** The same signature with `s` replaced by `n - s` (still valid for plain ECDSA, rejected as high-s). */
export const highS = (sig) => ({ r: sig.r, s: word(P256_N - BigInt(sig.s)) });

/** A P-256 public key `{ x, y, sec1, keyId }`; `keyId` = SHA-256 of the SEC1 uncompressed encoding. */
export function hostPublic(secret) {
  const sec1 = p256.getPublicKey(secretBytes(secret), false);
  return {
    x: bytesToHex(sec1.slice(1, 33)),
    y: bytesToHex(sec1.slice(33, 65)),
    sec1: bytesToHex(sec1),
    keyId: sha256(sec1),
  };
}

/** Tenant signature (secp256k1, low s, `r || s || v` with v 27/28). */
export function tenantSign(secret, digest) {
  const sig = secp256k1.sign(hexToBytes(digest), secretBytes(secret), { lowS: true });
  return concat([word(sig.r), word(sig.s), toHex(27 + sig.recovery, { size: 1 })]);
}

/** A tenant signature turned high-s (s' = n - s, v flipped): recovers the same address with plain ecrecover. */
export function tenantHighS(sig) {
  const b = hexToBytes(sig);
  const s = BigInt(bytesToHex(b.slice(32, 64)));
  const v = b[64] === 27 ? 28 : 27;
  return concat([bytesToHex(b.slice(0, 32)), word(SECP256K1_N - s), toHex(v, { size: 1 })]);
}

/** SHA-256 as the keyset hash uses it: `SHA-256("dait/v1/keyset" || bytes)`. */
export const keysetHash = (bytes) => sha256(concat([toHex('dait/v1/keyset'), bytes]));

function varint(n) {
  let v = BigInt(n);
  const out = [];
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) b |= 0x80;
    out.push(b);
  } while (v > 0n);
  return Uint8Array.from(out);
}

const lenField = (num, bytes) => concat([toHex(varint((num << 3) | 2)), toHex(varint(hexToBytes(bytes).length)), bytes]);
const varField = (num, n) => (BigInt(n) === 0n ? '0x' : concat([toHex(varint(num << 3)), toHex(varint(n))]));

/** Canonical protobuf `Keyset` (PROTOCOL.md sections 2 and 8). */
export function encodeKeyset(k) {
  return concat([
    varField(1, k.version),
    lenField(2, k.receiptKey),
    lenField(3, k.ohttpKeyConfig),
    lenField(4, k.tlsSpki),
    varField(5, k.chainId),
    lenField(6, k.settlement),
    varField(7, k.createdAt),
    lenField(8, k.bootId),
    lenField(9, k.hostAccount),
  ]);
}

/** The vector keyset's fields, for re-encoding with changes. */
export function keysetFromVector(v) {
  const k = v.keyset;
  return {
    version: k.version,
    receiptKey: hx(k.receipt_key),
    ohttpKeyConfig: hx(k.ohttp_key_config),
    tlsSpki: hx(k.tls_spki),
    chainId: BigInt(k.chain_id),
    settlement: hx(k.settlement),
    createdAt: BigInt(k.created_at),
    bootId: hx(k.boot_id),
    hostAccount: hx(k.host_account),
  };
}

const ZERO = `0x${'00'.repeat(32)}`;
const u128 = (n) => toHex(n, { size: 16 });

/** Merkle sum tree leaf: `keccak(0x00 || receiptHash)`, its sum the receipt's amount. */
export const leafHash = (receiptHash) => keccak256(concat(['0x00', receiptHash]));

/** Inner node: `keccak(0x01 || left || right || u128be(leftSum) || u128be(rightSum))`. */
export const nodeHash = (l, r, ls, rs) => keccak256(concat(['0x01', l, r, u128(ls), u128(rs)]));

/**
 * Builds the Merkle sum tree over `leaves` ([{ hash, sum }], in batch order). Width is the next power of two;
 * a subtree entirely at or after `count` is padding and is (0, 0) without hashing.
 */
export function buildSumTree(leaves) {
  const count = leaves.length;
  let depth = 0;
  while (1 << depth < count) depth += 1;
  const levels = [leaves.map((l) => ({ hash: l.hash, sum: l.sum }))];
  for (let level = 0; level < depth; level += 1) {
    const below = levels[level];
    const width = 1 << (depth - level - 1);
    const row = [];
    for (let i = 0; i < width; i += 1) {
      if (i << (level + 1) >= count) {
        row.push({ hash: ZERO, sum: 0n });
        continue;
      }
      const l = below[2 * i] ?? { hash: ZERO, sum: 0n };
      const r = below[2 * i + 1] ?? { hash: ZERO, sum: 0n };
      row.push({ hash: nodeHash(l.hash, r.hash, l.sum, r.sum), sum: l.sum + r.sum });
    }
    levels.push(row);
  }
  const top = levels[depth][0];
  return {
    count,
    depth,
    root: top.hash,
    total: top.sum,
    /** Proof words for leaf `index`: sibling hash and sibling sum per level, leaf to root. */
    proof(index) {
      const out = [];
      for (let level = 0; level < depth; level += 1) {
        const sib = levels[level][(index >> level) ^ 1] ?? { hash: ZERO, sum: 0n };
        out.push(sib.hash, word(sib.sum));
      }
      return out;
    },
  };
}
