// Settlement contract tests on a real EVM (anvil, started and stopped here): the happy path of every function,
// the negative cases with their own custom errors, agreement of the on-chain digests with the committed JSON
// vectors and with viem's EIP-712 code, and gas per operation.
//
//   node --test test/settlement.test.mjs          (after scripts/install-chain-tools.sh and scripts/contracts.sh build)
//   DAIT_GAS_REPORT=gas.json node --test test/settlement.test.mjs  also writes the gas figures as JSON
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import {
  bytesToHex,
  encodeDeployData,
  encodeFunctionData,
  hexToBytes,
  keccak256,
  maxUint256,
  sha256,
  toFunctionSelector,
  toHex,
  zeroAddress,
} from 'viem';
import { artefact, gas, recordGas, session, startAnvil } from './harness.mjs';
import {
  buildSumTree,
  channelId as jsChannelId,
  domain,
  domainSeparator as jsDomainSeparator,
  encodeKeyset,
  highS,
  hostPublic,
  hostSign,
  hx,
  keysetFromVector,
  keysetHash,
  leafHash,
  receiptArg,
  receiptDigest,
  receiptDigestFast,
  receiptFromVector,
  stateDigest,
  stateFromVector,
  tenantHighS,
  tenantSign,
  vector,
} from './protocol.mjs';

const ZERO = `0x${'00'.repeat(32)}`;
const E18 = 10n ** 18n;
const DAY = 86_400;
const PARAMS = {
  stakePerGpu: 100n * E18,
  unbondingDelay: 7n * BigInt(DAY),
  challengeWindow: BigInt(DAY),
  releaseDelay: 3600n,
  epochNonceRotationBlocks: 100n,
  commitRevealWindow: 5n,
  revealWindow: 64n,
  sampleSize: 8,
};

// Keys. The host operator is anvil's first account (the vectors' `host_account`, and the deployer at nonce 0,
// so the settlement lands at the vectors' `settlement` address); the tenant and the first receipt key are the
// vectors' keys.
const KEY = {
  hostOp: '0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80',
  tenant: `0x${'22'.repeat(32)}`,
  tokenDeployer: `0x${'33'.repeat(32)}`,
  owner: `0x${'44'.repeat(32)}`,
  host2: `0x${'55'.repeat(32)}`,
  reporter: `0x${'66'.repeat(32)}`,
  host3: `0x${'77'.repeat(32)}`,
};
const RECEIPT_KEY_1 = `0x${'11'.repeat(32)}`; // the vectors' host key (boot 1)
const RECEIPT_KEY_2 = `0x${'12'.repeat(32)}`; // the same host after a restart (boot 2)
const RECEIPT_KEY_HOST2 = `0x${'13'.repeat(32)}`;
const UNATTESTED_KEY = `0x${'14'.repeat(32)}`;

const V = {
  keyset: vector('keyset'),
  receipt: vector('receipt'),
  state: vector('channel_state'),
  bundle: vector('bundle'),
  batch: vector('batch'),
};

/** GPU id hash (PROTOCOL.md section 11): `SHA-256("dait/v1/gpu-id" || GPU UUID)`. */
const gpu = (name) => sha256(toHex(`dait/v1/gpu-idGPU-${name}`));
const REL1 = keccak256(toHex('release-1'));
const REL2 = keccak256(toHex('release-2'));

let anvil;
let chain;
let acct;
let token;
let settlement;
let dom;
let separator;
const K1 = hostPublic(RECEIPT_KEY_1);
const K2 = hostPublic(RECEIPT_KEY_2);
const KH2 = hostPublic(RECEIPT_KEY_HOST2);
const KU = hostPublic(UNATTESTED_KEY);
let keyset1Hash;
let keyset2Hash;

async function balance(address) {
  return chain.read(token, 'balanceOf', [address], chain.tokenAbi);
}

/** Deploys token (from its own account) and settlement (from the host operator at nonce 0). */
async function deployAll(c, a) {
  const t = await c.deploy(a.tokenDeployer, 'TestToken');
  const s = await c.deploy(a.hostOp, 'DaitSettlement', [{ token: t.address, owner: a.owner.address, ...PARAMS }]);
  recordGas('deploy DaitSettlement', s.receipt.gasUsed);
  return { token: t.address, settlement: s.address };
}

async function accounts(c) {
  const out = {};
  for (const [name, secret] of Object.entries(KEY)) out[name] = await c.account(secret);
  return out;
}

async function fund(c, tok, spender, who) {
  for (const a of who) {
    await c.send(a, tok, 'mint', [a.address, 1_000_000n * E18], { abi: c.tokenAbi });
    await c.send(a, tok, 'approve', [spender, maxUint256], { abi: c.tokenAbi });
  }
}

/** A keyset for `secret` on this deployment, operator `account`. */
function keysetFor(secret, account, boot) {
  const base = keysetFromVector(V.keyset);
  return encodeKeyset({
    ...base,
    receiptKey: hostPublic(secret).sec1,
    hostAccount: account,
    bootId: toHex(boot, { size: 16 }),
  });
}

/** Tracks one channel from the tenant's side: receipts in order, states after them. */
function channelRun({ tenant, host, salt, escrow }) {
  const id = jsChannelId(31337, settlement, tenant.address, host, salt);
  let turn = 0n;
  let cumulative = 0n;
  let last = ZERO;
  return {
    id,
    salt,
    /** The next receipt, signed by `secret` (boot key), applied to the run. */
    next(secret, ksHash, { tokensIn = 12n, tokensOut = 9n, priceIn = 1_000_000_000n, priceOut = 3_000_000_000n } = {}) {
      const amount = tokensIn * priceIn + tokensOut * priceOut;
      const receipt = mkReceipt({
        channelId: id,
        callSeq: turn + 1n,
        key: hostPublic(secret),
        keysetHash: ksHash,
        prev: last,
        cumulative: cumulative + amount,
        tokensIn,
        tokensOut,
        priceIn,
        priceOut,
      });
      const digest = receiptDigest(dom, receipt);
      turn += 1n;
      cumulative += amount;
      last = digest;
      return { receipt, digest, sig: hostSign(secret, digest) };
    },
    /** The state after the receipts so far, signed by the tenant. */
    state({ isFinal = false, signWith = dom, escrowCap = escrow } = {}) {
      const s = {
        channelId: id,
        turn,
        cumulative,
        escrowCap,
        lastReceiptHash: last,
        tenant: tenant.address,
        host,
        isFinal,
      };
      return { state: s, sig: tenantSign(KEY.tenant, stateDigest(signWith, s)) };
    },
    get cumulative() {
      return cumulative;
    },
  };
}

function mkReceipt({ channelId, callSeq, key, keysetHash: ks, prev, cumulative, tokensIn, tokensOut, priceIn, priceOut }) {
  const r0 = receiptFromVector(V.receipt.receipts[0].receipt);
  return {
    ...r0,
    channelId,
    callSeq,
    hostKeyId: key.keyId,
    keysetHash: ks,
    requestHash: keccak256(toHex(`request ${channelId} ${callSeq}`)),
    responseHash: keccak256(toHex(`response ${channelId} ${callSeq}`)),
    requestCtHash: keccak256(toHex(`ciphertext ${channelId} ${callSeq}`)),
    responseCtHash: ZERO,
    tokensIn,
    tokensOut,
    priceIn,
    priceOut,
    amount: tokensIn * priceIn + tokensOut * priceOut,
    cumulative,
    prevReceiptHash: prev,
    timestamp: 1_767_225_601n + callSeq,
  };
}

const salt = (n) => keccak256(toHex(`salt ${n}`));

async function openChannel(tenant, host, n, { escrow = E18, maxCalls = 100, maxPerCall = 10n ** 12n, deadlineIn = 30 * DAY, label } = {}) {
  const deadline = Number(await chain.now()) + deadlineIn;
  const receipt = await chain.send(tenant, settlement, 'openChannel', [host, salt(n), escrow, maxCalls, maxPerCall, deadline], { label });
  return { run: channelRun({ tenant, host, salt: salt(n), escrow }), receipt };
}

before(async () => {
  anvil = await startAnvil({ hardfork: 'osaka' });
  chain = await session(anvil);
  acct = await accounts(chain);
  ({ token, settlement } = await deployAll(chain, acct));
  dom = domain(31337, settlement);
  separator = jsDomainSeparator(dom);
  await fund(chain, token, settlement, [acct.hostOp, acct.tenant, acct.host2, acct.host3, acct.reporter]);
});

after(async () => {
  await anvil?.stop();
  printGas();
});

describe('digests', () => {
  it('deploys at the vectors\' settlement address', () => {
    assert.equal(settlement.toLowerCase(), hx(V.receipt.domain.settlement));
  });

  it('domain separator and receipt digests equal the vectors and viem', async () => {
    assert.equal(await chain.read(settlement, 'domainSeparator'), hx(V.receipt.domain_separator));
    assert.equal(separator, hx(V.receipt.domain_separator));
    for (const v of V.receipt.receipts) {
      const r = receiptFromVector(v.receipt);
      assert.equal(await chain.read(settlement, 'receiptDigest', [receiptArg(r)]), hx(v.receipt_hash));
      assert.equal(receiptDigest(dom, r), hx(v.receipt_hash));
      assert.equal(receiptDigestFast(separator, r), hx(v.receipt_hash));
    }
  });

  it('host signatures of the vectors verify on chain; invalid variants fail with their own errors', async () => {
    const x = hx(V.receipt.host_public.slice(2, 66));
    const y = hx(V.receipt.host_public.slice(66));
    assert.equal(x, K1.x);
    for (const v of V.receipt.receipts) {
      const sig = v.host_signature;
      assert.equal(
        await chain.read(settlement, 'verifyHostSignature', [hx(v.receipt_hash), hx(sig.slice(0, 64)), hx(sig.slice(64)), x, y]),
        true,
      );
    }
    const expected = { 'flipped-signature-bit': 'BadHostSignature', 'high-s': 'HostSignatureHighS', 'wrong-domain-chain-id-1': 'BadHostSignature' };
    const r0 = V.receipt.receipts[0];
    for (const inv of V.receipt.invalid.filter((i) => expected[i.name])) {
      // The signed receipt is receipt 1 with a changed signature (the last 64 bytes of the encoding).
      assert.ok(inv.signed_encoded.includes(r0.encoded));
      const sig = inv.signed_encoded.slice(-128);
      await assert.rejects(
        chain.read(settlement, 'verifyHostSignature', [hx(r0.receipt_hash), hx(sig.slice(0, 64)), hx(sig.slice(64)), x, y]),
        { message: `reverted: ${expected[inv.name]}` },
      );
    }
  });

  it('channel id and channel state digest equal the JavaScript ones', async () => {
    const s = salt(0);
    const id = await chain.read(settlement, 'channelId', [acct.tenant.address, acct.hostOp.address, s]);
    assert.equal(id, jsChannelId(31337, settlement, acct.tenant.address, acct.hostOp.address, s));
    const state = {
      channelId: id,
      turn: 3n,
      cumulative: 123n,
      escrowCap: E18,
      lastReceiptHash: hx(V.receipt.receipts[1].receipt_hash),
      tenant: acct.tenant.address,
      host: acct.hostOp.address,
      isFinal: true,
    };
    assert.equal(await chain.read(settlement, 'channelStateDigest', [state]), stateDigest(dom, state));
  });

  it('channel_state.json: channel id, state digests and host counter-signatures agree with the contract', async () => {
    const v = V.state;
    assert.equal(hx(v.host_account), acct.hostOp.address.toLowerCase());
    assert.equal(await chain.read(settlement, 'channelId', [hx(v.tenant_address), hx(v.host_account), hx(v.salt)]), hx(v.channel_id));
    const x = hx(v.host_public.slice(2, 66));
    const y = hx(v.host_public.slice(66));
    assert.ok(v.states.some((st) => st.state.is_final));
    for (const st of v.states) {
      const s = stateFromVector(st.state);
      assert.equal(await chain.read(settlement, 'channelStateDigest', [s]), hx(st.digest));
      assert.equal(stateDigest(dom, s), hx(st.digest));
      if (st.host_signature) {
        const sig = st.host_signature;
        assert.equal(
          await chain.read(settlement, 'verifyHostSignature', [hx(st.digest), hx(sig.slice(0, 64)), hx(sig.slice(64)), x, y]),
          true,
        );
      }
    }
  });

  it('keyset encoding and hash equal the vectors', () => {
    assert.equal(encodeKeyset(keysetFromVector(V.keyset)), hx(V.keyset.encoded));
    assert.equal(keysetHash(hx(V.keyset.encoded)), hx(V.keyset.keyset_hash));
    assert.equal(K1.keyId, hx(V.keyset.host_key_id));
  });
});

describe('hosts and releases', () => {
  it('registers hosts with stake per GPU and unique GPU ids', async () => {
    const before = await balance(acct.hostOp.address);
    await chain.send(acct.hostOp, settlement, 'registerHost', [[gpu('A'), gpu('B')]], { label: 'registerHost (2 GPUs)' });
    assert.equal(before - (await balance(acct.hostOp.address)), 2n * PARAMS.stakePerGpu);
    assert.equal(await chain.revertName(acct.host2, settlement, 'registerHost', [[gpu('B')]]), 'GpuAlreadyRegistered');
    assert.equal(await chain.revertName(acct.host2, settlement, 'registerHost', [[]]), 'NoGpus');
    await chain.send(acct.host2, settlement, 'registerHost', [[gpu('C')]], { label: 'registerHost (1 GPU)' });
    await chain.send(acct.host3, settlement, 'registerHost', [[gpu('D')]]);
    assert.equal(await chain.revertName(acct.hostOp, settlement, 'registerHost', [[gpu('E')]]), 'HostAlreadyRegistered');
  });

  it('publishes releases with a delay, revokes at once', async () => {
    const now = Number(await chain.now());
    const args = (id) => [id, keccak256(toHex(`reference ${id}`)), now - 10, now + 365 * DAY];
    assert.equal(await chain.revertName(acct.hostOp, settlement, 'publishRelease', args(REL1)), 'NotOwner');
    await chain.send(acct.owner, settlement, 'publishRelease', args(REL1), { label: 'publishRelease' });
    await chain.send(acct.owner, settlement, 'publishRelease', args(REL2));
    assert.equal(await chain.revertName(acct.owner, settlement, 'publishRelease', args(REL1)), 'ReleaseExists');
    await assert.rejects(chain.read(settlement, 'checkRelease', [REL1]), { message: 'reverted: ReleaseNotYetEffective' });
    await chain.warp(Number(PARAMS.releaseDelay) + 1);
    await chain.read(settlement, 'checkRelease', [REL1]);
    await chain.send(acct.owner, settlement, 'revokeRelease', [REL2], { label: 'revokeRelease' });
    await assert.rejects(chain.read(settlement, 'checkRelease', [REL2]), { message: 'reverted: ReleaseRevoked' });
    await assert.rejects(chain.read(settlement, 'checkRelease', [ZERO]), { message: 'reverted: ReleaseUnknown' });
    const later = keccak256(toHex('release-later'));
    assert.equal(await chain.revertName(acct.owner, settlement, 'publishRelease', [later, ZERO, now, now]), 'BadReleaseWindow');
    await chain.send(acct.owner, settlement, 'publishRelease', [later, ZERO, now + 30 * DAY, now + 60 * DAY]);
    await chain.warp(Number(PARAMS.releaseDelay) + 1);
    await assert.rejects(chain.read(settlement, 'checkRelease', [later]), { message: 'reverted: ReleaseOutOfValidity' });
  });
});

describe('attestations', () => {
  const bundleHash = hx(V.bundle.bundle_hash);
  const uri = 'https://host.example/v1/attestation';

  it('rejects wrong epochs, keysets and releases, each with its own error', async () => {
    const epoch = await chain.read(settlement, 'currentEpoch');
    const ks = hx(V.keyset.encoded);
    const att = (over = {}) => {
      const a = { keyset: ks, keyId: K1.keyId, epoch, release: REL1, ...over };
      return [a.keyset, a.keyId, a.epoch, bundleHash, a.release, uri];
    };
    const op = acct.hostOp;
    assert.equal(await chain.revertName(op, settlement, 'submitAttestation', att({ epoch: epoch + 1n })), 'WrongEpoch');
    assert.equal(await chain.revertName(op, settlement, 'submitAttestation', att({ release: REL2 })), 'ReleaseRevoked');
    assert.equal(await chain.revertName(op, settlement, 'submitAttestation', att({ keyId: K2.keyId })), 'HostKeyIdMismatch');
    const base = keysetFromVector(V.keyset);
    assert.equal(
      await chain.revertName(op, settlement, 'submitAttestation', att({ keyset: encodeKeyset({ ...base, chainId: 1n }) })),
      'KeysetChainIdMismatch',
    );
    assert.equal(
      await chain.revertName(op, settlement, 'submitAttestation', att({ keyset: encodeKeyset({ ...base, settlement: token }) })),
      'KeysetSettlementMismatch',
    );
    assert.equal(await chain.revertName(acct.host2, settlement, 'submitAttestation', att()), 'KeysetOperatorMismatch');
    // A point off the curve: y + 1.
    const bad = hexToBytes(K1.sec1);
    bad[64] ^= 1;
    const badKey = bytesToHex(bad);
    assert.equal(
      await chain.revertName(op, settlement, 'submitAttestation', att({ keyset: encodeKeyset({ ...base, receiptKey: badKey }), keyId: sha256(badKey) })),
      'BadReceiptKey',
    );
    assert.equal(await chain.revertName(op, settlement, 'submitAttestation', att({ keyset: ks.slice(0, -2) })), 'MalformedKeyset');
    assert.equal(await chain.revertName(acct.reporter, settlement, 'submitAttestation', att()), 'HostNotRegistered');
  });

  it('binds the vectors\' keyset to the current epoch', async () => {
    const epoch = await chain.read(settlement, 'currentEpoch');
    const [nonce, recorded] = await chain.read(settlement, 'epochNonce', [epoch]);
    assert.equal(recorded, false);
    const rc = await chain.send(acct.hostOp, settlement, 'submitAttestation', [hx(V.keyset.encoded), K1.keyId, epoch, bundleHash, REL1, uri], {
      label: 'submitAttestation',
    });
    const ev = rc.events.find((e) => e.eventName === 'AttestationSubmitted');
    assert.equal(ev.args.keysetHash, hx(V.keyset.keyset_hash));
    assert.equal(ev.args.epochNonce, nonce);
    keyset1Hash = ev.args.keysetHash;
    assert.deepEqual(await chain.read(settlement, 'epochNonce', [epoch]), [nonce, true]);
    const [operator, lastEpoch, x, y] = await chain.read(settlement, 'hostKeys', [K1.keyId]);
    assert.deepEqual([operator, lastEpoch, x, y], [acct.hostOp.address, epoch, K1.x, K1.y]);
    // Host 2 attests its own key.
    await chain.send(acct.host2, settlement, 'submitAttestation', [keysetFor(RECEIPT_KEY_HOST2, acct.host2.address, 2), KH2.keyId, epoch, bundleHash, REL1, uri]);
  });

  it('a key attested by one operator cannot be attested by another', async () => {
    const epoch = await chain.read(settlement, 'currentEpoch');
    const ks = keysetFor(RECEIPT_KEY_1, acct.host2.address, 9);
    assert.equal(
      await chain.revertName(acct.host2, settlement, 'submitAttestation', [ks, K1.keyId, epoch, bundleHash, REL1, uri]),
      'HostKeyOwnedByOther',
    );
  });
});

describe('channels', () => {
  it('open, claim, claim with receipt, cooperative close: balances equal the receipts to the unit', async () => {
    const host = acct.hostOp.address;
    const hostBefore = await balance(host);
    const tenantBefore = await balance(acct.tenant.address);
    const { run } = await openChannel(acct.tenant, host, 1, { label: 'openChannel' });
    run.next(RECEIPT_KEY_1, keyset1Hash);
    const s1 = run.state();
    await chain.send(acct.reporter, settlement, 'claim', [run.salt, s1.state, s1.sig], { label: 'claim (first)' });
    run.next(RECEIPT_KEY_1, keyset1Hash, { tokensOut: 64n, tokensIn: 20n });
    const s2 = run.state();
    await chain.send(acct.hostOp, settlement, 'claim', [run.salt, s2.state, s2.sig], { label: 'claim' });
    assert.equal(await chain.revertName(acct.hostOp, settlement, 'claim', [run.salt, s1.state, s1.sig]), 'StaleState');
    const r3 = run.next(RECEIPT_KEY_1, keyset1Hash);
    await chain.send(acct.hostOp, settlement, 'claimWithReceipt', [run.salt, s2.state, s2.sig, receiptArg(r3.receipt), r3.sig.r, r3.sig.s], {
      label: 'claimWithReceipt',
    });
    run.next(RECEIPT_KEY_1, keyset1Hash);
    const fin = run.state({ isFinal: true });
    const hostSig = hostSign(RECEIPT_KEY_1, stateDigest(dom, fin.state));
    await chain.send(acct.tenant, settlement, 'closeChannel', [run.salt, fin.state, fin.sig, K1.keyId, hostSig.r, hostSig.s], {
      label: 'closeChannel (host P-256 countersignature)',
    });
    assert.equal((await balance(host)) - hostBefore, run.cumulative);
    assert.equal(tenantBefore - (await balance(acct.tenant.address)), run.cumulative);
    const [escrow, , , paid, turn, , status] = await chain.read(settlement, 'channels', [run.id]);
    assert.deepEqual([escrow, paid, turn, status], [0n, run.cumulative, 4n, 3]);
    // Closed for good.
    const again = [run.salt, fin.state, fin.sig, K1.keyId, hostSig.r, hostSig.s];
    assert.equal(await chain.revertName(acct.tenant, settlement, 'closeChannel', again), 'ChannelClosed');
    assert.equal(await chain.revertName(acct.hostOp, settlement, 'claim', [run.salt, fin.state, fin.sig]), 'ChannelClosed');
    const deadline = Number(await chain.now()) + DAY;
    assert.equal(
      await chain.revertName(acct.tenant, settlement, 'openChannel', [host, run.salt, E18, 10, 10n ** 12n, deadline]),
      'ChannelIdUsed',
    );
  });

  it('rejects unknown channels and out-of-range words', async () => {
    const run = channelRun({ tenant: acct.tenant, host: acct.hostOp.address, salt: salt(99), escrow: E18 });
    run.next(RECEIPT_KEY_1, keyset1Hash);
    const s1 = run.state();
    assert.equal(await chain.revertName(acct.hostOp, settlement, 'claim', [run.salt, s1.state, s1.sig]), 'ChannelUnknown');
    const args = [acct.tenant.address, acct.hostOp.address, run.salt];
    assert.equal(await chain.revertName(acct.tenant, settlement, 'startClose', args), 'ChannelUnknown');
    assert.equal(await chain.revertName(acct.tenant, settlement, 'finalize', args), 'ChannelUnknown');
    // A turn word above 2^64: ABI-valid bytes, but not a uint64, so not the signed state.
    const data = encodeFunctionData({ abi: chain.settlementAbi, functionName: 'channelStateDigest', args: [s1.state] });
    const dirty = `${data.slice(0, 10 + 64)}${'01'}${data.slice(10 + 66)}`;
    const res = await anvil.rpc('eth_call', [{ to: settlement, data: dirty }, 'latest']).catch((e) => e);
    assert.match(String(res?.message), new RegExp(toFunctionSelector('MalformedInput()').slice(2)));
  });

  it('a failed token transfer is TransferFailed; bad deployment parameters are InvalidParams', async () => {
    // The owner holds no tokens and approved nothing.
    const deadline = Number(await chain.now()) + DAY;
    assert.equal(
      await chain.revertName(acct.owner, settlement, 'openChannel', [acct.hostOp.address, salt(98), E18, 10, 1n, deadline]),
      'TransferFailed',
    );
    const { abi, bytecode } = artefact('DaitSettlement');
    const data = encodeDeployData({ abi, bytecode, args: [{ token, owner: acct.owner.address, ...PARAMS, sampleSize: 0 }] });
    const res = await anvil.rpc('eth_call', [{ from: acct.owner.address, data }, 'latest']).catch((e) => e);
    assert.match(String(res?.message), new RegExp(toFunctionSelector('InvalidParams()').slice(2)));
  });

  it('hands the release registry over in two steps', async () => {
    assert.equal(await chain.revertName(acct.reporter, settlement, 'transferOwnership', [acct.reporter.address]), 'NotOwner');
    await chain.send(acct.owner, settlement, 'transferOwnership', [acct.reporter.address]);
    assert.equal(await chain.revertName(acct.tenant, settlement, 'acceptOwnership'), 'NotPendingOwner');
    await chain.send(acct.reporter, settlement, 'acceptOwnership');
    assert.equal(await chain.read(settlement, 'owner'), acct.reporter.address);
    await chain.send(acct.reporter, settlement, 'transferOwnership', [acct.owner.address]);
    await chain.send(acct.owner, settlement, 'acceptOwnership');
  });

  it('a cooperative close sent by the host needs no host signature', async () => {
    const { run } = await openChannel(acct.tenant, acct.hostOp.address, 2);
    run.next(RECEIPT_KEY_1, keyset1Hash);
    const s1 = run.state();
    await chain.send(acct.hostOp, settlement, 'claim', [run.salt, s1.state, s1.sig]);
    run.next(RECEIPT_KEY_1, keyset1Hash);
    const fin = run.state({ isFinal: true });
    await chain.send(acct.hostOp, settlement, 'closeChannel', [run.salt, fin.state, fin.sig, ZERO, ZERO, ZERO], {
      label: 'closeChannel (sent by host)',
    });
    // The same without the flag or from anyone else fails.
    const { run: r2 } = await openChannel(acct.tenant, acct.hostOp.address, 3);
    r2.next(RECEIPT_KEY_1, keyset1Hash);
    const notFinal = r2.state();
    assert.equal(await chain.revertName(acct.hostOp, settlement, 'closeChannel', [r2.salt, notFinal.state, notFinal.sig, ZERO, ZERO, ZERO]), 'NotFinal');
    const f2 = r2.state({ isFinal: true });
    assert.equal(await chain.revertName(acct.tenant, settlement, 'closeChannel', [r2.salt, f2.state, f2.sig, K1.keyId, ZERO, ZERO]), 'BadHostSignature');
  });

  it('rejects bad tenant signatures, limits and receipts, each with its own error', async () => {
    const host = acct.hostOp.address;
    const escrow = 1_000_000_000_000n;
    const { run } = await openChannel(acct.tenant, host, 4, { escrow, maxCalls: 3, maxPerCall: 300_000_000_000n });
    const op = acct.hostOp;
    const claim = (s) => chain.revertName(op, settlement, 'claim', [run.salt, s.state, s.sig]);
    run.next(RECEIPT_KEY_1, keyset1Hash);
    // Signed for another chain id, for another contract, high s.
    assert.equal(await claim(run.state({ signWith: domain(1, settlement) })), 'BadTenantSignature');
    assert.equal(await claim(run.state({ signWith: domain(31337, token) })), 'BadTenantSignature');
    const good = run.state();
    assert.equal(await claim({ state: good.state, sig: tenantHighS(good.sig) }), 'TenantSignatureHighS');
    // A state naming another host than the channel id's.
    const other = { ...good.state, host: acct.host2.address };
    assert.equal(await claim({ state: other, sig: tenantSign(KEY.tenant, stateDigest(dom, other)) }), 'WrongChannelId');
    // Over the state's cap, over the escrow, over max calls, over max per call (average).
    const signed = (patch) => {
      const s = { ...good.state, ...patch };
      return { state: s, sig: tenantSign(KEY.tenant, stateDigest(dom, s)) };
    };
    assert.equal(await claim(signed({ escrowCap: 1n })), 'OverEscrowCap');
    assert.equal(await claim(signed({ cumulative: escrow + 1n, escrowCap: escrow * 2n })), 'OverEscrow');
    assert.equal(await claim(signed({ turn: 4n })), 'OverMaxCalls');
    assert.equal(await claim(signed({ cumulative: 300_000_000_001n })), 'OverMaxPerCall');
    assert.equal(await claim(signed({ turn: 0n })), 'StaleState');
    await chain.send(op, settlement, 'claim', [run.salt, good.state, good.sig]);
    assert.equal(await claim(signed({ turn: 2n, cumulative: good.state.cumulative - 1n })), 'CumulativeBelowPaid');
    // Receipts on top of the state.
    const withReceipt = (r, sig = r.sig) =>
      chain.revertName(op, settlement, 'claimWithReceipt', [run.salt, good.state, good.sig, receiptArg(r.receipt), sig.r, sig.s]);
    const r2 = run.next(RECEIPT_KEY_1, keyset1Hash);
    assert.equal(await withReceipt(r2, hostSign(RECEIPT_KEY_2, r2.digest)), 'BadHostSignature');
    assert.equal(await withReceipt(r2, highS(r2.sig)), 'HostSignatureHighS');
    const resign = (receipt, secret = RECEIPT_KEY_1) => {
      const digest = receiptDigest(dom, receipt);
      return { receipt, digest, sig: hostSign(secret, digest) };
    };
    assert.equal(await withReceipt(resign({ ...r2.receipt, hostKeyId: KH2.keyId }, RECEIPT_KEY_HOST2)), 'WrongHostKey');
    assert.equal(await withReceipt(resign({ ...r2.receipt, hostKeyId: KU.keyId }, UNATTESTED_KEY)), 'UnknownHostKey');
    assert.equal(await withReceipt(resign({ ...r2.receipt, callSeq: 3n })), 'ReceiptNotNext');
    assert.equal(await withReceipt(resign({ ...r2.receipt, prevReceiptHash: ZERO })), 'ReceiptPrevHash');
    assert.equal(await withReceipt(resign({ ...r2.receipt, amount: r2.receipt.amount + 1n })), 'ReceiptAmount');
    assert.equal(await withReceipt(resign({ ...r2.receipt, cumulative: r2.receipt.cumulative + 1n })), 'ReceiptCumulative');
    assert.equal(await withReceipt(resign({ ...r2.receipt, channelId: ZERO })), 'ReceiptWrongChannel');
    assert.equal(await withReceipt(resign({ ...r2.receipt, version: 2 })), 'UnsupportedReceiptVersion');
    const big = { ...r2.receipt, tokensOut: 100n, amount: 12n * 1_000_000_000n + 100n * 3_000_000_000n };
    big.cumulative = good.state.cumulative + big.amount;
    assert.equal(await withReceipt(resign(big)), 'OverMaxPerCall');
  });

  it('unilateral close: a higher turn wins during the window, finalize after it', async () => {
    const host = acct.hostOp.address;
    const escrow = E18;
    const { run } = await openChannel(acct.tenant, host, 5, { escrow });
    run.next(RECEIPT_KEY_1, keyset1Hash);
    const s1 = run.state();
    run.next(RECEIPT_KEY_1, keyset1Hash);
    const s2 = run.state();
    await chain.send(acct.hostOp, settlement, 'claim', [run.salt, s1.state, s1.sig]);
    const tenantBefore = await balance(acct.tenant.address);
    const closeArgs = [acct.tenant.address, host, run.salt];
    assert.equal(await chain.revertName(acct.reporter, settlement, 'startClose', closeArgs), 'NotParty');
    await chain.send(acct.tenant, settlement, 'startClose', closeArgs, { label: 'startClose' });
    assert.equal(await chain.revertName(acct.tenant, settlement, 'startClose', closeArgs), 'ChannelClosing');
    assert.equal(await chain.revertName(acct.tenant, settlement, 'finalize', closeArgs), 'WindowNotOver');
    // The host answers with a higher turn; an older one is stale.
    await chain.send(acct.hostOp, settlement, 'claim', [run.salt, s2.state, s2.sig], { label: 'claim (challenge during close)' });
    assert.equal(await chain.revertName(acct.hostOp, settlement, 'claim', [run.salt, s1.state, s1.sig]), 'StaleState');
    run.next(RECEIPT_KEY_1, keyset1Hash);
    const s3 = run.state();
    await chain.warp(DAY + 1);
    assert.equal(await chain.revertName(acct.hostOp, settlement, 'claim', [run.salt, s3.state, s3.sig]), 'ChallengeWindowOver');
    await chain.send(acct.reporter, settlement, 'finalize', closeArgs, { label: 'finalize' });
    assert.equal((await balance(acct.tenant.address)) - tenantBefore, escrow - s2.state.cumulative);
    assert.equal(await chain.revertName(acct.tenant, settlement, 'finalize', closeArgs), 'ChannelClosed');
  });

  it('an expired channel can be finalized after its deadline plus the window', async () => {
    const host = acct.hostOp.address;
    const { run } = await openChannel(acct.tenant, host, 6, { deadlineIn: 1000 });
    const args = [acct.tenant.address, host, run.salt];
    assert.equal(await chain.revertName(acct.reporter, settlement, 'finalize', args), 'ChannelNotExpired');
    run.next(RECEIPT_KEY_1, keyset1Hash);
    const s1 = run.state();
    await chain.warp(1000 + DAY + 1);
    assert.equal(await chain.revertName(acct.hostOp, settlement, 'claim', [run.salt, s1.state, s1.sig]), 'ChannelExpired');
    await chain.send(acct.reporter, settlement, 'finalize', args);
    const deadline = Number(await chain.now()) - 1;
    assert.equal(await chain.revertName(acct.tenant, settlement, 'openChannel', [host, salt(60), E18, 10, 1n, deadline]), 'DeadlineInPast');
    assert.equal(await chain.revertName(acct.tenant, settlement, 'openChannel', [host, salt(60), 0n, 10, 1n, deadline + 100]), 'InvalidChannelParams');
  });

  it('an agent restart: a new attested key continues the same channel', async () => {
    const host = acct.hostOp.address;
    const { run } = await openChannel(acct.tenant, host, 7);
    run.next(RECEIPT_KEY_1, keyset1Hash);
    const s1 = run.state();
    // Boot 2: a new keyset, attested by the same operator.
    const epoch = await chain.read(settlement, 'currentEpoch');
    const ks2 = keysetFor(RECEIPT_KEY_2, host, 2);
    keyset2Hash = keysetHash(ks2);
    await chain.send(acct.hostOp, settlement, 'submitAttestation', [ks2, K2.keyId, epoch, ZERO, REL1, 'boot 2']);
    const r2 = run.next(RECEIPT_KEY_2, keyset2Hash);
    const hostBefore = await balance(host);
    await chain.send(acct.reporter, settlement, 'claimWithReceipt', [run.salt, s1.state, s1.sig, receiptArg(r2.receipt), r2.sig.r, r2.sig.s]);
    run.next(RECEIPT_KEY_2, keyset2Hash);
    const fin = run.state({ isFinal: true });
    const hs = hostSign(RECEIPT_KEY_2, stateDigest(dom, fin.state));
    await chain.send(acct.tenant, settlement, 'closeChannel', [run.salt, fin.state, fin.sig, K2.keyId, hs.r, hs.s]);
    assert.equal((await balance(host)) - hostBefore, run.cumulative);
  });
});

/** `count` receipts of the host operator's key 1 on one channel, with their digests and the tree. */
function makeBatch(count, { tag = 'batch', extraAmount = 0n } = {}) {
  const id = keccak256(toHex(`${tag} ${count}`));
  const receipts = [];
  let cumulative = 0n;
  let prev = ZERO;
  for (let i = 0; i < count; i += 1) {
    const tokensOut = BigInt(1 + (i % 50));
    const amount = 12n * 1_000_000_000n + tokensOut * 3_000_000_000n;
    cumulative += amount;
    const receipt = mkReceipt({
      channelId: id,
      callSeq: BigInt(i + 1),
      key: K1,
      keysetHash: keyset1Hash,
      prev,
      cumulative,
      tokensIn: 12n,
      tokensOut,
      priceIn: 1_000_000_000n,
      priceOut: 3_000_000_000n,
    });
    const digest = receiptDigestFast(separator, receipt);
    prev = digest;
    receipts.push({ receipt, digest });
  }
  const leaves = receipts.map((r) => ({ hash: leafHash(r.digest), sum: r.receipt.amount }));
  if (extraAmount > 0n) leaves.push({ hash: keccak256(toHex('hidden')), sum: extraAmount });
  return { receipts, tree: buildSumTree(leaves) };
}

async function revealItems(host, batchData) {
  const indices = await chain.read(settlement, 'sampleIndices', [host, batchData.tree.root]);
  return {
    indices,
    items: indices.map((i) => {
      const { receipt, digest } = batchData.receipts[Number(i)];
      const sig = hostSign(RECEIPT_KEY_1, digest);
      return { receipt: receiptArg(receipt), r: sig.r, s: sig.s, proof: batchData.tree.proof(Number(i)) };
    }),
  };
}

describe('receipt batches', () => {
  const amortised = [];

  it('commit, reveal a block-hash-chosen sample with Merkle sum proofs, credit the host', async () => {
    const host = acct.hostOp.address;
    for (const count of [100, 1000, 10000]) {
      const b = makeBatch(count);
      assert.equal(receiptDigest(dom, b.receipts[0].receipt), b.receipts[0].digest);
      const commit = await chain.send(acct.hostOp, settlement, 'commitReceipts', [b.tree.root, count, b.tree.total], {
        label: 'commitReceipts',
      });
      assert.equal(await chain.revertName(acct.hostOp, settlement, 'revealReceipts', [host, b.tree.root, []]), 'RevealTooEarly');
      await chain.mine(Number(PARAMS.commitRevealWindow) + 1);
      const { indices, items } = await revealItems(host, b);
      // The contract's sample equals the rule in the README.
      const seedBlock = commit.blockNumber + PARAMS.commitRevealWindow;
      const seed = (await chain.publicClient.getBlock({ blockNumber: seedBlock })).hash;
      const { encodeAbiParameters } = await import('viem');
      const expected = indices.map((_, j) =>
        j === 0
          ? BigInt(count - 1)
          : BigInt(
              keccak256(
                encodeAbiParameters([{ type: 'bytes32' }, { type: 'address' }, { type: 'bytes32' }, { type: 'uint256' }], [seed, host, b.tree.root, BigInt(j)]),
              ),
            ) % BigInt(count),
      );
      assert.deepEqual(indices, expected);
      if (count === 1000) {
        // Negative cases on the real batch.
        const wrongProof = items.map((it, j) => (j === 1 ? { ...it, proof: [keccak256('0x01'), ...it.proof.slice(1)] } : it));
        assert.equal(await chain.revertName(acct.hostOp, settlement, 'revealReceipts', [host, b.tree.root, wrongProof]), 'BadProof');
        const shortProof = items.map((it, j) => (j === 2 ? { ...it, proof: it.proof.slice(2) } : it));
        assert.equal(await chain.revertName(acct.hostOp, settlement, 'revealReceipts', [host, b.tree.root, shortProof]), 'BadProof');
        assert.equal(await chain.revertName(acct.hostOp, settlement, 'revealReceipts', [host, b.tree.root, items.slice(1)]), 'WrongSampleCount');
        const forged = items.map((it, j) => (j === 3 ? { ...it, s: items[4].s } : it));
        assert.equal(await chain.revertName(acct.hostOp, settlement, 'revealReceipts', [host, b.tree.root, forged]), 'BadHostSignature');
      }
      const reveal = await chain.send(acct.reporter, settlement, 'revealReceipts', [host, b.tree.root, items], {
        label: `revealReceipts (${count} receipts, depth ${b.tree.depth})`,
      });
      amortised.push({ count, commit: Number(commit.gasUsed), reveal: Number(reveal.gasUsed) });
      assert.equal(await chain.revertName(acct.hostOp, settlement, 'revealReceipts', [host, b.tree.root, items]), 'BatchNotCommitted');
    }
    const [amount, receipts, batches] = await chain.read(settlement, 'credits', [host]);
    assert.equal(receipts, 11100n);
    assert.equal(batches, 3);
    assert.ok(amount > 0n);
    for (const a of amortised) {
      recordGas(`commit + reveal per receipt at ${a.count}`, Math.round((a.commit + a.reveal) / a.count));
    }
  });

  it('rejects a total that is not the sum of the leaves, and leaves hidden after count', async () => {
    const host = acct.hostOp.address;
    const b = makeBatch(20, { tag: 'total' });
    await chain.send(acct.hostOp, settlement, 'commitReceipts', [b.tree.root, 20, b.tree.total + 1n]);
    assert.equal(await chain.revertName(acct.hostOp, settlement, 'commitReceipts', [b.tree.root, 20, b.tree.total + 1n]), 'BatchExists');
    assert.equal(await chain.revertName(acct.hostOp, settlement, 'commitReceipts', [ZERO, 0, 0n]), 'EmptyBatch');
    // 20 real leaves plus a hidden 21st whose amount inflates the total; committed with count 20.
    const hidden = makeBatch(20, { tag: 'hidden', extraAmount: 10n ** 15n });
    await chain.send(acct.hostOp, settlement, 'commitReceipts', [hidden.tree.root, 20, hidden.tree.total]);
    await chain.mine(Number(PARAMS.commitRevealWindow) + 1);
    assert.equal(await chain.revertName(acct.hostOp, settlement, 'revealReceipts', [host, b.tree.root, (await revealItems(host, b)).items]), 'TotalMismatch');
    assert.equal(
      await chain.revertName(acct.hostOp, settlement, 'revealReceipts', [host, hidden.tree.root, (await revealItems(host, hidden)).items]),
      'BadProof',
    );
  });

  it('batch.json: tree, proofs and sample rule equal the vector; the contract accepts its receipts and proofs', async () => {
    const v = V.batch;
    const host = acct.hostOp.address;
    assert.equal(hx(v.host), host.toLowerCase());
    const leaves = v.leaves.map((l) => ({ hash: leafHash(hx(l.receipt_hash)), sum: BigInt(l.amount) }));
    leaves.forEach((l, i) => assert.equal(l.hash, hx(v.leaves[i].leaf_hash)));
    const tree = buildSumTree(leaves);
    assert.deepEqual([tree.root, tree.total, tree.depth], [hx(v.root), BigInt(v.total), v.depth]);
    v.leaves.forEach((l, i) => assert.deepEqual(tree.proof(i), l.proof.map(hx)));
    const { encodeAbiParameters } = await import('viem');
    const sample = v.sample_indices.map((_, j) =>
      j === 0
        ? v.count - 1
        : Number(
            BigInt(
              keccak256(
                encodeAbiParameters([{ type: 'bytes32' }, { type: 'address' }, { type: 'bytes32' }, { type: 'uint256' }], [hx(v.seed), host, hx(v.root), BigInt(j)]),
              ),
            ) % BigInt(v.count),
          ),
    );
    assert.deepEqual(sample, v.sample_indices);
    // On chain: the receipts are signed by the vectors' host key, which this operator attested.
    const item = (i, proof) => {
      const l = v.leaves[i];
      const r = receiptFromVector(l.receipt);
      return { receipt: receiptArg(r), r: hx(l.host_signature.slice(0, 64)), s: hx(l.host_signature.slice(64)), proof: proof ?? l.proof.map(hx) };
    };
    for (const l of v.leaves) {
      assert.equal(await chain.read(settlement, 'receiptDigest', [receiptArg(receiptFromVector(l.receipt))]), hx(l.receipt_hash));
    }
    await chain.send(acct.hostOp, settlement, 'commitReceipts', [hx(v.root), v.count, BigInt(v.total)]);
    await chain.mine(Number(PARAMS.commitRevealWindow) + 1);
    const indices = (await chain.read(settlement, 'sampleIndices', [host, hx(v.root)])).map(Number);
    const items = indices.map((i) => item(i));
    // Each invalid proof of the vector fails with the contract error it names (where its leaf is sampled).
    let checked = 0;
    for (const bad of v.invalid.filter((b) => b.total === v.total)) {
      const j = indices.indexOf(bad.index);
      if (j < 0) continue;
      const forged = items.map((it, k) => (k === j ? item(bad.index, bad.proof.map(hx)) : it));
      assert.equal(await chain.revertName(acct.hostOp, settlement, 'revealReceipts', [host, hx(v.root), forged]), bad.contract_error, bad.name);
      checked += 1;
    }
    assert.ok(checked >= 1, 'the padding case (leaf count - 1) is always sampled');
    await chain.send(acct.reporter, settlement, 'revealReceipts', [host, hx(v.root), items]);
    assert.equal((await chain.read(settlement, 'batch', [host, hx(v.root)])).total, BigInt(v.total));
  });

  it('a batch not revealed in time is forfeited', async () => {
    const host = acct.hostOp.address;
    const b = makeBatch(10, { tag: 'late' });
    await chain.send(acct.hostOp, settlement, 'commitReceipts', [b.tree.root, 10, b.tree.total]);
    await chain.mine(Number(PARAMS.commitRevealWindow) + 1);
    const { items } = await revealItems(host, b);
    assert.equal(await chain.revertName(acct.reporter, settlement, 'forfeitBatch', [host, b.tree.root]), 'RevealStillOpen');
    await chain.mine(Number(PARAMS.revealWindow));
    assert.equal(await chain.revertName(acct.hostOp, settlement, 'revealReceipts', [host, b.tree.root, items]), 'RevealTooLate');
    await chain.send(acct.reporter, settlement, 'forfeitBatch', [host, b.tree.root], { label: 'forfeitBatch' });
    assert.equal(await chain.revertName(acct.reporter, settlement, 'forfeitBatch', [host, b.tree.root]), 'BatchNotCommitted');
    assert.equal(await chain.revertName(acct.reporter, settlement, 'forfeitBatch', [host, ZERO]), 'BatchUnknown');
    const [, , , forfeited] = await chain.read(settlement, 'credits', [host]);
    assert.equal(forfeited, 1);
  });
});

describe('unbonding and slashing', () => {
  it('stake comes back after the unbonding delay, with exactly the registered GPU ids', async () => {
    const h3 = acct.host3;
    assert.equal(await chain.revertName(h3, settlement, 'withdrawStake', [[gpu('D')]]), 'NotUnbonding');
    await chain.send(h3, settlement, 'beginUnbonding', [], { label: 'beginUnbonding' });
    assert.equal(await chain.revertName(h3, settlement, 'beginUnbonding'), 'AlreadyUnbonding');
    assert.equal(await chain.revertName(h3, settlement, 'withdrawStake', [[gpu('D')]]), 'UnbondingNotOver');
    const deadline = Number(await chain.now()) + DAY;
    assert.equal(await chain.revertName(acct.tenant, settlement, 'openChannel', [h3.address, salt(70), E18, 10, 1n, deadline]), 'HostUnbonding');
    await chain.warp(7 * DAY + 1);
    assert.equal(await chain.revertName(h3, settlement, 'withdrawStake', [[gpu('C')]]), 'GpuListMismatch');
    const before = await balance(h3.address);
    await chain.send(h3, settlement, 'withdrawStake', [[gpu('D')]], { label: 'withdrawStake (1 GPU)' });
    assert.equal((await balance(h3.address)) - before, PARAMS.stakePerGpu);
    assert.equal(await chain.read(settlement, 'gpuOwner', [gpu('D')]), zeroAddress);
    assert.equal(await chain.revertName(h3, settlement, 'withdrawStake', [[gpu('D')]]), 'HostNotRegistered');
  });

  it('two different receipts by one attested key for the same call slash its operator', async () => {
    const host2 = acct.host2.address;
    const id = jsChannelId(31337, settlement, acct.tenant.address, host2, salt(80));
    const base = mkReceipt({
      channelId: id,
      callSeq: 5n,
      key: KH2,
      keysetHash: ZERO,
      prev: ZERO,
      cumulative: 10n ** 12n,
      tokensIn: 1n,
      tokensOut: 1n,
      priceIn: 1n,
      priceOut: 1n,
    });
    const a = { ...base, amount: 2n };
    const b = { ...base, amount: 2n, responseHash: keccak256(toHex('another response')) };
    const signed = (r, secret = RECEIPT_KEY_HOST2) => {
      const s = hostSign(secret, receiptDigest(dom, r));
      return [receiptArg(r), s.r, s.s];
    };
    const slash = (x, y) => chain.revertName(acct.reporter, settlement, 'slashEquivocation', [...x, ...y]);
    assert.equal(await slash(signed(a), signed(a)), 'SameReceipt');
    assert.equal(await slash(signed(a), signed({ ...b, callSeq: 6n })), 'NotSameCall');
    assert.equal(await slash(signed(a), signed({ ...b, hostKeyId: K1.keyId }, RECEIPT_KEY_1)), 'NotSameKey');
    const forged = signed(b, RECEIPT_KEY_1);
    assert.equal(await slash(signed(a), forged), 'BadHostSignature');
    const before = await balance(acct.reporter.address);
    await chain.send(acct.reporter, settlement, 'slashEquivocation', [...signed(a), ...signed(b)], { label: 'slashEquivocation' });
    assert.equal((await balance(acct.reporter.address)) - before, PARAMS.stakePerGpu / 2n);
    const [stake, , , status] = await chain.read(settlement, 'hosts', [host2]);
    assert.deepEqual([stake, status], [0n, 2]);
    assert.equal(await slash(signed(a), signed(b)), 'NothingToSlash');
    const deadline = Number(await chain.now()) + DAY;
    assert.equal(await chain.revertName(acct.tenant, settlement, 'openChannel', [host2, salt(81), E18, 10, 1n, deadline]), 'HostIsSlashed');
  });
});

describe('a chain without P256VERIFY (prague)', () => {
  let pAnvil;
  let p;
  let pa;
  let pSettlement;

  before(async () => {
    pAnvil = await startAnvil({ hardfork: 'prague' });
    p = await session(pAnvil);
    pa = await accounts(p);
    const d = await deployAll(p, pa);
    pSettlement = d.settlement;
    await fund(p, d.token, pSettlement, [pa.hostOp, pa.tenant]);
  });

  after(async () => {
    await pAnvil?.stop();
  });

  it('fails closed: valid host signatures are rejected', async () => {
    assert.equal(pSettlement, settlement);
    const v = V.receipt.receipts[0];
    const sig = v.host_signature;
    await assert.rejects(
      p.read(pSettlement, 'verifyHostSignature', [hx(v.receipt_hash), hx(sig.slice(0, 64)), hx(sig.slice(64)), K1.x, K1.y]),
      { message: 'reverted: BadHostSignature' },
    );
    // The whole path: register, attest, open, then a claim with a receipt and a countersigned close both fail.
    await p.send(pa.hostOp, pSettlement, 'registerHost', [[gpu('A')]]);
    const now = Number(await p.now());
    await p.send(pa.owner, pSettlement, 'publishRelease', [REL1, ZERO, now - 10, now + DAY * 365]);
    await p.warp(Number(PARAMS.releaseDelay) + 1);
    const epoch = await p.read(pSettlement, 'currentEpoch');
    await p.send(pa.hostOp, pSettlement, 'submitAttestation', [hx(V.keyset.encoded), K1.keyId, epoch, ZERO, REL1, '']);
    const deadline = Number(await p.now()) + DAY;
    await p.send(pa.tenant, pSettlement, 'openChannel', [pa.hostOp.address, salt(1), E18, 10, 10n ** 12n, deadline]);
    const run = channelRun({ tenant: pa.tenant, host: pa.hostOp.address, salt: salt(1), escrow: E18 });
    run.next(RECEIPT_KEY_1, hx(V.keyset.keyset_hash));
    const s1 = run.state();
    const r2 = run.next(RECEIPT_KEY_1, hx(V.keyset.keyset_hash));
    assert.equal(
      await p.revertName(pa.hostOp, pSettlement, 'claimWithReceipt', [run.salt, s1.state, s1.sig, receiptArg(r2.receipt), r2.sig.r, r2.sig.s]),
      'BadHostSignature',
    );
    const fin = run.state({ isFinal: true });
    const hs = hostSign(RECEIPT_KEY_1, stateDigest(dom, fin.state));
    assert.equal(
      await p.revertName(pa.tenant, pSettlement, 'closeChannel', [run.salt, fin.state, fin.sig, K1.keyId, hs.r, hs.s]),
      'BadHostSignature',
    );
  });
});

describe('gas targets of the issue', () => {
  const max = (label) => Math.max(...gas.get(label));
  it('claim <= 60k, cooperative close <= 100k, open <= 150k, commit <= 70k, commit + reveal <= 500/receipt at 1,000', () => {
    assert.ok(max('claim') <= 60_000, `claim ${max('claim')}`);
    assert.ok(max('claim (first)') <= 60_000, `claim (first) ${max('claim (first)')}`);
    assert.ok(max('closeChannel (host P-256 countersignature)') <= 100_000);
    assert.ok(max('closeChannel (sent by host)') <= 100_000);
    assert.ok(max('openChannel') <= 150_000);
    assert.ok(max('commitReceipts') <= 70_000);
    assert.ok(max('commit + reveal per receipt at 1000') <= 500);
  });
});

function printGas() {
  const rows = [...gas.entries()].map(([label, v]) => ({
    label,
    min: Math.min(...v),
    max: Math.max(...v),
    n: v.length,
  }));
  const width = Math.max(...rows.map((r) => r.label.length));
  const lines = rows.map((r) => `${r.label.padEnd(width)}  ${String(r.min).padStart(9)}${r.max !== r.min ? ` .. ${r.max}` : ''}`);
  process.stdout.write(`\ngas used (anvil, hardfork osaka)\n${lines.join('\n')}\n`);
  if (process.env.DAIT_GAS_REPORT) {
    writeFileSync(process.env.DAIT_GAS_REPORT, `${JSON.stringify(rows, null, 2)}\n`);
  }
}
