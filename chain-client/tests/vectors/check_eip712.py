#!/usr/bin/env python3
"""Independent check of the EIP-712 vectors in this folder, in Python with no dependencies.

Recomputes the domain separator, the receipt and channel-state struct hashes and digests, channel_id, and
the receipt batch's Merkle sum tree (root, total, proofs, sample indices) from the JSON fields with a self-contained Keccak-256 (itself checked against keccak("") and the
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
check('channel state type hash', k(c['channel_state_type'].encode()).hex()==c['channel_state_type_hash']=='f1c828715f65138c7b63c9103ca0890db290cca2e20a384aeec0df5c4cc5ef59')
for i,st in enumerate(c['states']):
    s=st['state']
    enc=k(c['channel_state_type'].encode())+h(s['channel_id'])+w(s['turn'])+w(s['cumulative'])+w(s['escrow_cap'])+h(s['last_receipt_hash'])+bytes(12)+h(s['tenant'])+bytes(12)+h(s['host'])+w(1 if s['is_final'] else 0)
    sh=k(enc); dig=k(b'\x19\x01'+sep+sh)
    check(f'state {i} struct hash', sh.hex()==st['struct_hash']); check(f'state {i} digest', dig.hex()==st['digest'])
cid=k(w(d['chain_id'])+bytes(12)+h(d['settlement'])+bytes(12)+h(c['tenant_address'])+bytes(12)+h(c['host_account'])+h(c['salt']))
check('channel_id', cid.hex()==c['channel_id'])
# Receipt batch (PROTOCOL.md section 11): Merkle sum tree, proofs and sample indices.
b=json.load(open(os.path.join(HERE, 'batch.json')))
count=b['count']; depth=0
while (1<<depth)<count: depth+=1
row=[(k(b'\x00'+h(l['receipt_hash'])), int(l['amount'])) for l in b['leaves']]
check('batch leaves', [x[0].hex() for x in row]==[l['leaf_hash'] for l in b['leaves']] and len(row)==count)
levels=[row]
for lv in range(depth):
    below=levels[-1]; up=[]
    for i in range(0,len(below),2):
        l=below[i]; r=below[i+1] if i+1<len(below) else (bytes(32),0)
        up.append((k(b'\x01'+l[0]+r[0]+l[1].to_bytes(16,'big')+r[1].to_bytes(16,'big')), l[1]+r[1]))
    levels.append(up)
check('batch root and total', levels[-1][0][0].hex()==b['root'] and levels[-1][0][1]==int(b['total']) and depth==b['depth'])
for l in b['leaves']:
    i=l['index']; words=[]
    for lv in range(depth):
        j=(i>>lv)^1; sib=levels[lv][j] if j<len(levels[lv]) else (bytes(32),0)
        words+= [sib[0].hex(), w(sib[1]).hex()]
    check(f'batch proof {i}', words==l['proof'])
idx=[count-1]+[int.from_bytes(k(h(b['seed'])+bytes(12)+h(b['host'])+h(b['root'])+w(j)),'big')%count for j in range(1,min(b['sample_size'],count))]
check('batch sample indices', idx==b['sample_indices'])
sys.exit(0 if ok else 1)
