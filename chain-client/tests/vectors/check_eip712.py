#!/usr/bin/env python3
"""Independent check of the EIP-712 vectors in this folder, in Python with no dependencies.

Recomputes the domain separator, the receipt and channel-state struct hashes and digests, and channel_id
from the JSON fields with a self-contained Keccak-256 (itself checked against keccak("") and the
EIP712Domain type hash). Run: python3 check_eip712.py
"""
import json
import os
import sys

RC=[0x0000000000000001,0x0000000000008082,0x800000000000808A,0x8000000080008000,0x000000000000808B,0x0000000080000001,0x8000000080008081,0x8000000000008009,0x000000000000008A,0x0000000000000088,0x0000000080008009,0x000000008000000A,0x000000008000808B,0x800000000000008B,0x8000000000008089,0x8000000000008003,0x8000000000008002,0x8000000000000080,0x000000000000800A,0x800000008000000A,0x8000000080008081,0x8000000000008080,0x0000000080000001,0x8000000080008008]
ROT=[[0,36,3,41,18],[1,44,10,45,2],[62,6,43,15,61],[28,55,25,21,56],[27,20,39,8,14]]
M=(1<<64)-1
def rol(x,n): return ((x<<n)|(x>>(64-n)))&M if n else x
def f(A):
    for rc in RC:
        C=[A[x][0]^A[x][1]^A[x][2]^A[x][3]^A[x][4] for x in range(5)]
        D=[C[(x-1)%5]^rol(C[(x+1)%5],1) for x in range(5)]
        A=[[A[x][y]^D[x] for y in range(5)] for x in range(5)]
        B=[[0]*5 for _ in range(5)]
        for x in range(5):
            for y in range(5):
                B[y][(2*x+3*y)%5]=rol(A[x][y],ROT[x][y])
        A=[[B[x][y]^((~B[(x+1)%5][y])&B[(x+2)%5][y]) for y in range(5)] for x in range(5)]
        A[0][0]^=rc
    return A
def keccak256(data):
    rate=136
    p=bytearray(data)+b'\x01'
    while len(p)%rate: p+=b'\x00'
    p[-1]|=0x80
    A=[[0]*5 for _ in range(5)]
    for off in range(0,len(p),rate):
        blk=p[off:off+rate]
        for i in range(rate//8):
            x,y=i%5,i//5
            A[x][y]^=int.from_bytes(blk[8*i:8*i+8],'little')
        A=f(A)
    out=b''
    for i in range(4):
        x,y=i%5,i//5
        out+=A[x][y].to_bytes(8,'little')
    return out.hex()

assert keccak256(b"") == "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
HERE = os.path.dirname(os.path.abspath(__file__))
ok = True
def check(name, cond):
    global ok
    print(("ok  " if cond else "BAD ") + name)
    ok = ok and cond
def w(n): return int(n).to_bytes(32,'big')
def h(x): return bytes.fromhex(x)
def k(b): return bytes.fromhex(keccak256(b))
r=json.load(open(os.path.join(HERE, 'receipt.json')))
c=json.load(open(os.path.join(HERE, 'channel_state.json')))
d=r['domain']
sep=k(k(b"EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)")+k(b"dait")+k(b"1")+w(d['chain_id'])+bytes(12)+h(d['settlement']))
check('domain separator', sep.hex()==r['domain_separator'])
ints={'version','call_seq','tokens_in','tokens_out','price_in','price_out','amount','cumulative','timestamp','seed'}
for i,rec in enumerate(r['receipts']):
    rc=rec['receipt']; enc=k(r['receipt_type'].encode())
    for fld in ['version','channel_id','call_seq','host_key_id','keyset_hash','model_id','weight_hash','request_hash','response_hash','request_ct_hash','response_ct_hash','tokens_in','tokens_out','price_in','price_out','amount','cumulative','prev_receipt_hash','timestamp','seed','engine_build','deterministic']:
        v=rc[fld]
        if fld=='model_id': enc+=k(v.encode())
        elif fld=='deterministic': enc+=w(1 if v else 0)
        elif fld in ints: enc+=w(v)
        else: enc+=h(v)
    sh=k(enc); dig=k(b'\x19\x01'+sep+sh)
    check(f'receipt {i+1} struct hash', sh.hex()==rec['struct_hash']); check(f'receipt {i+1} digest', dig.hex()==rec['receipt_hash'])
for i,st in enumerate(c['states']):
    s=st['state']
    enc=k(c['channel_state_type'].encode())+h(s['channel_id'])+w(s['turn'])+w(s['cumulative'])+w(s['escrow_cap'])+h(s['last_receipt_hash'])+bytes(12)+h(s['tenant'])+h(s['host_key_id'])
    sh=k(enc); dig=k(b'\x19\x01'+sep+sh)
    check(f'state {i} struct hash', sh.hex()==st['struct_hash']); check(f'state {i} digest', dig.hex()==st['digest'])
cid=k(w(d['chain_id'])+bytes(12)+h(d['settlement'])+bytes(12)+h(c['tenant_address'])+h(c['states'][0]['state']['host_key_id'])+h(c['salt']))
check('channel_id', cid.hex()==c['channel_id'])
sys.exit(0 if ok else 1)
