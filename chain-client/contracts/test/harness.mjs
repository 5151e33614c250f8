// A local chain for the tests: starts anvil on 127.0.0.1 (a free port, bounded start-up time), deploys the
// committed artefacts, sends transactions from local keys and decodes custom-error reverts. Stops what it started.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync, existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  BaseError,
  ContractFunctionRevertedError,
  createPublicClient,
  createWalletClient,
  decodeEventLog,
  encodeDeployData,
  encodeFunctionData,
  http,
  parseEther,
} from 'viem';
import { privateKeyToAccount } from 'viem/accounts';
import { foundry } from 'viem/chains';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..');

/** A committed artefact (`out/<name>.json`). */
export const artefact = (name) => JSON.parse(readFileSync(join(root, 'out', `${name}.json`), 'utf8'));

function anvilBinary() {
  if (process.env.DAIT_ANVIL) return process.env.DAIT_ANVIL;
  const local = join(root, 'node_modules', '.bin', 'anvil');
  if (existsSync(local)) return local;
  throw new Error('anvil not found: run scripts/install-chain-tools.sh (or set DAIT_ANVIL)');
}

async function freePort() {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address();
  server.close();
  await once(server, 'close');
  return port;
}

async function rpc(url, method, params = []) {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }),
  });
  const body = await res.json();
  if (body.error) throw new Error(`${method}: ${body.error.message}`);
  return body.result;
}

/**
 * Starts anvil with `hardfork` (osaka has P256VERIFY at 0x100, prague has not) and waits until it answers, at
 * most `timeoutMs`. Returns `{ url, rpc, stop }`.
 */
export async function startAnvil({ hardfork = 'osaka', timeoutMs = 30_000 } = {}) {
  const port = await freePort();
  const child = spawn(
    anvilBinary(),
    ['--host', '127.0.0.1', '--port', String(port), '--hardfork', hardfork, '--chain-id', '31337', '--silent'],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr.on('data', (d) => {
    stderr += d;
  });
  let exited = false;
  child.once('exit', () => {
    exited = true;
  });
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (exited) throw new Error(`anvil exited at start-up: ${stderr}`);
    try {
      await rpc(url, 'eth_chainId');
      break;
    } catch {
      if (Date.now() > deadline) {
        child.kill('SIGKILL');
        throw new Error(`anvil did not answer within ${timeoutMs} ms: ${stderr}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return {
    url,
    rpc: (method, params) => rpc(url, method, params),
    async stop() {
      if (exited) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await once(child, 'exit');
      clearTimeout(timer);
    },
  };
}

/** Recorded gas per operation, for the report. */
export const gas = new Map();

/** Records `gasUsed` under `label` (several samples per label are kept). */
export function recordGas(label, used) {
  if (!gas.has(label)) gas.set(label, []);
  gas.get(label).push(Number(used));
}

/**
 * A chain session: clients, funded local accounts, helpers to deploy, send, read and expect reverts.
 */
export async function session(anvil) {
  const transport = http(anvil.url);
  const publicClient = createPublicClient({ chain: foundry, transport });
  const walletClient = createWalletClient({ chain: foundry, transport });
  const settlementAbi = artefact('DaitSettlement').abi;
  const tokenAbi = artefact('TestToken').abi;
  const abis = [...settlementAbi, ...tokenAbi.filter((e) => e.type === 'error')];

  async function account(secret) {
    const a = privateKeyToAccount(secret);
    await anvil.rpc('anvil_setBalance', [a.address, `0x${parseEther('1000').toString(16)}`]);
    return a;
  }

  async function waitOk(hash, label) {
    const receipt = await publicClient.waitForTransactionReceipt({ hash });
    if (receipt.status !== 'success') throw new Error(`${label}: transaction reverted`);
    return receipt;
  }

  async function deploy(from, name, args = []) {
    const { abi, bytecode } = artefact(name);
    const hash = await walletClient.sendTransaction({
      account: from,
      data: encodeDeployData({ abi, bytecode, args }),
      gas: 10_000_000n,
    });
    const receipt = await waitOk(hash, `deploy ${name}`);
    return { address: receipt.contractAddress, receipt };
  }

  /** Simulates, then sends; throws the custom error's name if the simulation reverts. Returns the receipt. */
  async function send(from, address, functionName, args = [], { label, abi = abis } = {}) {
    await simulate(from, address, functionName, args, abi);
    const hash = await walletClient.sendTransaction({
      account: from,
      to: address,
      data: encodeFunctionData({ abi, functionName, args }),
      gas: 15_000_000n,
    });
    const receipt = await waitOk(hash, functionName);
    if (label) recordGas(label, receipt.gasUsed);
    receipt.events = receipt.logs.flatMap((log) => {
      try {
        return [decodeEventLog({ abi, data: log.data, topics: log.topics })];
      } catch {
        return [];
      }
    });
    return receipt;
  }

  async function simulate(from, address, functionName, args, abi = abis) {
    try {
      return (await publicClient.simulateContract({ account: from, address, abi, functionName, args })).result;
    } catch (e) {
      throw revertError(e);
    }
  }

  /** Calls a view; a custom-error revert becomes an error whose message is the error's name. */
  async function read(address, functionName, args = [], abi = abis) {
    try {
      return await publicClient.readContract({ address, abi, functionName, args });
    } catch (e) {
      throw revertError(e);
    }
  }

  /** Resolves to the custom error name a call reverts with (fails if it does not revert). */
  async function revertName(from, address, functionName, args = []) {
    try {
      await simulate(from, address, functionName, args);
    } catch (e) {
      if (e.revertName) return e.revertName;
      throw e;
    }
    throw new Error(`${functionName} did not revert`);
  }

  return {
    anvil,
    publicClient,
    account,
    deploy,
    send,
    read,
    revertName,
    settlementAbi,
    tokenAbi,
    async mine(blocks = 1) {
      await anvil.rpc('anvil_mine', [`0x${blocks.toString(16)}`]);
    },
    async warp(seconds) {
      await anvil.rpc('evm_increaseTime', [seconds]);
      await anvil.rpc('evm_mine', []);
    },
    async now() {
      return (await publicClient.getBlock()).timestamp;
    },
    async blockNumber() {
      return publicClient.getBlockNumber();
    },
  };
}

function revertError(e) {
  if (e instanceof BaseError) {
    const reverted = e.walk((x) => x instanceof ContractFunctionRevertedError);
    if (reverted instanceof ContractFunctionRevertedError) {
      const name = reverted.data?.errorName ?? (reverted.raw === undefined || reverted.raw === '0x' ? 'EmptyRevert' : reverted.raw);
      const err = new Error(`reverted: ${name}`);
      err.revertName = name;
      return err;
    }
  }
  return e;
}
