// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

/// @dev The ERC-20 calls the settlement makes.
interface IERC20Minimal {
    function transfer(address to, uint256 amount) external returns (bool);
    function transferFrom(address from, address to, uint256 amount) external returns (bool);
}

/// @title DaitSettlement
/// @notice The reference settlement of dait on an EVM chain, one singleton per deployment, denominated in one
/// ERC-20: a host registry with stake per GPU, a release registry, per-epoch attestations, one-directional state
/// channels (tenant pays host) and receipt batches committed as Merkle sum roots and revealed by sample.
/// @dev Byte layouts (EIP-712 digests, channel id, keyset, Merkle tree, sampling) are those of the protocol
/// document and of `chain-client/contracts/README.md` (the proposed protocol changes this contract follows). Host
/// signatures are ECDSA P-256 checked with the P256VERIFY precompile at 0x100 (RIP-7212, EIP-7951): a high `s`,
/// a failing call, an empty answer (no precompile on this chain) or any answer but 1 is a failure. Tenant
/// signatures are secp256k1, checked with `ecrecover`, low `s`. Every failure has its own custom error.
contract DaitSettlement {
    // ------------------------------------------------------------------------------------------------------------
    // Types
    // ------------------------------------------------------------------------------------------------------------

    /// @notice Deployment parameters, fixed for the contract's life.
    struct Params {
        /// The ERC-20 every stake, escrow and payment is denominated in.
        address token;
        /// Who publishes and revokes releases.
        address owner;
        /// Stake a host locks per registered GPU.
        uint128 stakePerGpu;
        /// Seconds between `beginUnbonding` and `withdrawStake`.
        uint64 unbondingDelay;
        /// Seconds a unilateral close stays open for a higher state (24 h by default).
        uint64 challengeWindow;
        /// Seconds between publishing a release and it becoming usable.
        uint64 releaseDelay;
        /// Blocks per attestation epoch.
        uint64 epochNonceRotationBlocks;
        /// Blocks between a batch commit and the block whose hash picks the sample.
        uint64 commitRevealWindow;
        /// Blocks after the sample block during which the sample can be revealed (at most 256).
        uint64 revealWindow;
        /// Leaves revealed per batch (at most the batch's count), 1 to 64.
        uint32 sampleSize;
    }

    /// @notice A receipt as EIP-712 `Receipt` (protocol section 5), member for member, except that `modelId`
    /// enters as its hash `keccak(utf8 bytes)`, exactly as it enters the struct hash.
    struct Receipt {
        uint32 version;
        bytes32 channelId;
        uint64 callSeq;
        bytes32 hostKeyId;
        bytes32 keysetHash;
        bytes32 modelIdHash;
        bytes32 weightHash;
        bytes32 requestHash;
        bytes32 responseHash;
        bytes32 requestCtHash;
        bytes32 responseCtHash;
        uint64 tokensIn;
        uint64 tokensOut;
        uint128 priceIn;
        uint128 priceOut;
        uint128 amount;
        uint128 cumulative;
        bytes32 prevReceiptHash;
        uint64 timestamp;
        uint64 seed;
        bytes32 engineBuild;
        bool deterministic;
    }

    /// @notice A channel state as EIP-712 `ChannelState` of the proposal in the contracts README: bound to the
    /// host's operator account (`host`), not to one boot's key, with an `isFinal` flag for cooperative close.
    struct ChannelState {
        bytes32 channelId;
        uint64 turn;
        uint128 cumulative;
        uint128 escrowCap;
        bytes32 lastReceiptHash;
        address tenant;
        address host;
        bool isFinal;
    }

    /// @notice One revealed leaf of a receipt batch: the receipt, the host's P-256 signature over its digest, and
    /// the Merkle sum proof (sibling hash and sibling sum per level, leaf to root).
    struct Reveal {
        Receipt receipt;
        bytes32 r;
        bytes32 s;
        bytes32[] proof;
    }

    /// @notice What the reveal of one batch checks each leaf against.
    struct Sample {
        address host;
        bytes32 root;
        bytes32 seed;
        uint256 count;
        uint256 total;
        uint256 depth;
    }

    /// @notice Host registration state.
    enum HostStatus {
        None,
        Active,
        Slashed
    }

    /// @notice Channel life cycle.
    enum ChannelStatus {
        None,
        Open,
        Closing,
        Closed
    }

    /// @notice Receipt batch life cycle.
    enum BatchStatus {
        None,
        Committed,
        Revealed,
        Forfeited
    }

    /// @notice A registered host, keyed by its operator account (one slot).
    struct Host {
        uint128 stake;
        uint32 gpuCount;
        /// Zero while bonded; the time stake can be withdrawn once unbonding started.
        uint40 unbondingAt;
        HostStatus status;
    }

    /// @notice Proof-of-useful-work credit of a host (one slot).
    struct Credit {
        uint128 amount;
        uint64 receipts;
        uint32 batches;
        uint32 forfeited;
    }

    /// @notice An attested receipt key: the operator that attested it, the last epoch it did, and the point.
    struct HostKey {
        address operator;
        uint64 lastEpoch;
        bytes32 x;
        bytes32 y;
    }

    /// @notice A published release of reference measurements.
    struct Release {
        bytes32 referenceHash;
        uint64 notBefore;
        uint64 notAfter;
        uint64 effectiveAt;
        bool revoked;
    }

    /// @notice A host's attestation for one epoch (the bundle itself stays off chain).
    struct Attestation {
        bytes32 keysetHash;
        bytes32 hostKeyId;
        bytes32 bundleHash;
        bytes32 releaseId;
    }

    /// @notice A channel in two slots: limits set at open, then progress. `time` is the deadline while open and
    /// the end of the challenge window while closing.
    struct Channel {
        uint128 escrow;
        uint96 maxPerCall;
        uint32 maxCalls;
        uint128 paid;
        uint64 turn;
        uint40 time;
        ChannelStatus status;
    }

    /// @notice A committed receipt batch (one slot).
    struct Batch {
        uint32 count;
        uint128 total;
        uint64 commitBlock;
        BatchStatus status;
    }

    // ------------------------------------------------------------------------------------------------------------
    // Errors: one per failure
    // ------------------------------------------------------------------------------------------------------------

    /// @notice A constructor parameter is out of range (or the stake of a registration overflows 128 bits).
    error InvalidParams();
    /// @notice Only the owner may do this.
    error NotOwner();
    /// @notice Only the pending owner may accept ownership.
    error NotPendingOwner();
    /// @notice An ERC-20 transfer failed or returned false.
    error TransferFailed();

    /// @notice The sender is already a registered (or slashed) host.
    error HostAlreadyRegistered();
    /// @notice `registerHost` without GPUs.
    error NoGpus();
    /// @notice The GPU id hash is zero or registered to a host already.
    error GpuAlreadyRegistered(bytes32 gpuIdHash);
    /// @notice The account is not a registered host.
    error HostNotRegistered();
    /// @notice The host was slashed.
    error HostIsSlashed();
    /// @notice The host is unbonding (no new attestations or channels).
    error HostUnbonding();
    /// @notice `beginUnbonding` twice.
    error AlreadyUnbonding();
    /// @notice `withdrawStake` without `beginUnbonding`.
    error NotUnbonding();
    /// @notice `withdrawStake` before the unbonding delay ended.
    error UnbondingNotOver();
    /// @notice The GPU id hashes given to `withdrawStake` are not exactly the host's.
    error GpuListMismatch();

    /// @notice The release id is taken.
    error ReleaseExists();
    /// @notice No release with this id.
    error ReleaseUnknown();
    /// @notice The release's publication delay has not passed.
    error ReleaseNotYetEffective();
    /// @notice The release was revoked.
    error ReleaseRevoked();
    /// @notice Now is outside the release's not-before/not-after window.
    error ReleaseOutOfValidity();
    /// @notice `notAfter` is not after `notBefore`.
    error BadReleaseWindow();

    /// @notice The attestation is not for the current epoch.
    error WrongEpoch(uint64 current);
    /// @notice The keyset bytes are not a version 1 protobuf `Keyset`.
    error MalformedKeyset();
    /// @notice The keyset's `chain_id` is not this chain's.
    error KeysetChainIdMismatch();
    /// @notice The keyset's `settlement` is not this contract.
    error KeysetSettlementMismatch();
    /// @notice The keyset's `host_account` is not the sender.
    error KeysetOperatorMismatch();
    /// @notice `hostKeyId` is not SHA-256 of the keyset's receipt key.
    error HostKeyIdMismatch();
    /// @notice The receipt key is not a point on P-256.
    error BadReceiptKey();
    /// @notice The receipt key was attested by another operator.
    error HostKeyOwnedByOther();

    /// @notice Zero escrow, max calls or max per call.
    error InvalidChannelParams();
    /// @notice The deadline is not in the future.
    error DeadlineInPast();
    /// @notice This channel id was used before (ids are never reopened).
    error ChannelIdUsed();
    /// @notice No channel with this id.
    error ChannelUnknown();
    /// @notice The channel is closed.
    error ChannelClosed();
    /// @notice The channel is already closing.
    error ChannelClosing();
    /// @notice The channel passed its deadline and its challenge window: only `finalize` remains.
    error ChannelExpired();
    /// @notice `finalize` on an open channel before its deadline plus the challenge window.
    error ChannelNotExpired();
    /// @notice The challenge window of a closing channel is over.
    error ChallengeWindowOver();
    /// @notice `finalize` before the challenge window ended.
    error WindowNotOver();
    /// @notice Only the channel's tenant or host may start a unilateral close.
    error NotParty();
    /// @notice The state's channel id is not derived from its tenant, host and the salt.
    error WrongChannelId();
    /// @notice A state, receipt or proof word is out of its type's range.
    error MalformedInput();
    /// @notice The tenant signature does not recover the state's tenant.
    error BadTenantSignature();
    /// @notice The tenant signature's `s` is in the upper half of the order.
    error TenantSignatureHighS();
    /// @notice The state's turn is not above the channel's (below it, for a cooperative close).
    error StaleState();
    /// @notice The state's cumulative is below what was paid already.
    error CumulativeBelowPaid();
    /// @notice The cumulative exceeds the channel's escrow.
    error OverEscrow();
    /// @notice The cumulative exceeds the state's own escrow cap.
    error OverEscrowCap();
    /// @notice The turn exceeds the channel's max calls.
    error OverMaxCalls();
    /// @notice A call's amount (or the average over the turns) exceeds the channel's max per call.
    error OverMaxPerCall();
    /// @notice A cooperative close needs a state with `isFinal` set.
    error NotFinal();

    /// @notice The receipt's version is not 1.
    error UnsupportedReceiptVersion();
    /// @notice The receipt is for another channel.
    error ReceiptWrongChannel();
    /// @notice The receipt's call_seq is not the state's turn plus one.
    error ReceiptNotNext();
    /// @notice The receipt's prev_receipt_hash is not the state's last receipt hash.
    error ReceiptPrevHash();
    /// @notice The receipt's amount is not tokens times prices.
    error ReceiptAmount();
    /// @notice The receipt's cumulative is not the state's cumulative plus its amount.
    error ReceiptCumulative();
    /// @notice The host key id was never attested.
    error UnknownHostKey();
    /// @notice The host key was attested by another operator than the channel's or batch's host.
    error WrongHostKey();
    /// @notice The host signature does not verify (or P256VERIFY is absent or failed).
    error BadHostSignature();
    /// @notice The host signature's `s` is in the upper half of the order.
    error HostSignatureHighS();

    /// @notice A batch with this root was committed by this host already.
    error BatchExists();
    /// @notice A batch needs at least one receipt.
    error EmptyBatch();
    /// @notice No batch with this host and root.
    error BatchUnknown();
    /// @notice The batch was revealed or forfeited already.
    error BatchNotCommitted();
    /// @notice The sample block has not been mined yet.
    error RevealTooEarly();
    /// @notice The reveal window is over.
    error RevealTooLate();
    /// @notice The reveal window is still open.
    error RevealStillOpen();
    /// @notice The number of revealed leaves is not the sample size.
    error WrongSampleCount();
    /// @notice A Merkle proof does not lead to the committed root.
    error BadProof();
    /// @notice A Merkle proof's sums do not add up to the committed total.
    error TotalMismatch();

    /// @notice The two receipts are signed by different keys.
    error NotSameKey();
    /// @notice The two receipts are for different (channel, call_seq).
    error NotSameCall();
    /// @notice The two receipts are the same receipt.
    error SameReceipt();
    /// @notice The host has no stake left to slash.
    error NothingToSlash();

    // ------------------------------------------------------------------------------------------------------------
    // Events: one per state change
    // ------------------------------------------------------------------------------------------------------------

    /// @notice Ownership handover started.
    event OwnershipTransferStarted(address indexed owner, address indexed pendingOwner);
    /// @notice Ownership changed.
    event OwnershipTransferred(address indexed previousOwner, address indexed newOwner);
    /// @notice A host registered its GPUs and locked its stake.
    event HostRegistered(address indexed operator, bytes32[] gpuIdHashes, uint256 stake);
    /// @notice A host started unbonding.
    event UnbondingStarted(address indexed operator, uint256 withdrawableAt);
    /// @notice A host withdrew its stake and freed its GPU ids.
    event StakeWithdrawn(address indexed operator, uint256 stake);
    /// @notice A host was slashed for two receipts for the same call.
    event HostSlashed(
        address indexed operator,
        bytes32 indexed hostKeyId,
        bytes32 indexed channelId,
        uint64 callSeq,
        address reporter,
        uint256 stake,
        uint256 reward
    );
    /// @notice A release was published; usable from `effectiveAt`.
    event ReleasePublished(
        bytes32 indexed releaseId, bytes32 referenceHash, uint64 notBefore, uint64 notAfter, uint64 effectiveAt
    );
    /// @notice A release was revoked.
    event ReleaseRevokedEvent(bytes32 indexed releaseId);
    /// @notice An epoch's nonce was fixed.
    event EpochNonceRecorded(uint64 indexed epoch, bytes32 nonce);
    /// @notice A host attested a keyset for an epoch.
    event AttestationSubmitted(
        address indexed operator,
        uint64 indexed epoch,
        bytes32 indexed hostKeyId,
        bytes32 keysetHash,
        bytes32 bundleHash,
        bytes32 releaseId,
        bytes32 epochNonce,
        string uri
    );
    /// @notice A tenant opened a channel to a host.
    event ChannelOpened(
        bytes32 indexed channelId,
        address indexed tenant,
        address indexed host,
        bytes32 salt,
        uint256 escrow,
        uint32 maxCalls,
        uint96 maxPerCall,
        uint40 deadline
    );
    /// @notice A state (or a state plus a receipt) was claimed; `paidNow` went to the host.
    event Claimed(bytes32 indexed channelId, uint64 turn, uint256 cumulative, uint256 paidNow);
    /// @notice A unilateral close started; higher states are accepted until `closeAt`.
    event CloseStarted(bytes32 indexed channelId, address indexed by, uint64 turn, uint256 cumulative, uint40 closeAt);
    /// @notice A channel closed (cooperatively or by `finalize`).
    event ChannelSettled(
        bytes32 indexed channelId, uint64 turn, uint256 cumulative, uint256 toHost, uint256 toTenant, bool cooperative
    );
    /// @notice A host committed a receipt batch.
    event ReceiptsCommitted(
        address indexed host, bytes32 indexed root, uint32 count, uint128 total, uint64 commitBlock
    );
    /// @notice A batch's sample was revealed and checked; its receipts count as useful work.
    event ReceiptsRevealed(address indexed host, bytes32 indexed root, uint32 count, uint128 total);
    /// @notice A batch was not revealed in time.
    event BatchForfeited(address indexed host, bytes32 indexed root, uint32 count, uint128 total);

    // ------------------------------------------------------------------------------------------------------------
    // Constants
    // ------------------------------------------------------------------------------------------------------------

    /// @dev EIP-712 type hashes (protocol section 5; `ChannelState` as proposed in the contracts README).
    bytes32 private constant DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
    bytes32 private constant RECEIPT_TYPEHASH = keccak256(
        "Receipt(uint32 version,bytes32 channelId,uint64 callSeq,bytes32 hostKeyId,bytes32 keysetHash,string modelId,bytes32 weightHash,bytes32 requestHash,bytes32 responseHash,bytes32 requestCtHash,bytes32 responseCtHash,uint64 tokensIn,uint64 tokensOut,uint128 priceIn,uint128 priceOut,uint128 amount,uint128 cumulative,bytes32 prevReceiptHash,uint64 timestamp,uint64 seed,bytes32 engineBuild,bool deterministic)"
    );
    bytes32 private constant CHANNEL_STATE_TYPEHASH = keccak256(
        "ChannelState(bytes32 channelId,uint64 turn,uint128 cumulative,uint128 escrowCap,bytes32 lastReceiptHash,address tenant,address host,bool isFinal)"
    );
    bytes32 private constant NAME_HASH = keccak256("dait");
    bytes32 private constant VERSION_HASH = keccak256("1");

    /// @dev P-256: field prime, curve constant b, group order and its half (low-s bound).
    uint256 private constant P256_P = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF;
    uint256 private constant P256_B = 0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B;
    uint256 private constant P256_N_HALF = 0x7FFFFFFF800000007FFFFFFFFFFFFFFFDE737D56D38BCF4279DCE5617E3192A8;
    /// @dev secp256k1 group order's half (low-s bound for tenant signatures).
    uint256 private constant SECP256K1_N_HALF = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0;
    /// @dev The P256VERIFY precompile.
    address private constant P256VERIFY = address(0x100);
    /// @dev Supported receipt version.
    uint32 private constant RECEIPT_VERSION = 1;
    /// @dev Byte size of a `Receipt` in calldata (22 words) and of a `ChannelState` (8 words).
    uint256 private constant RECEIPT_WORDS_SIZE = 704;
    uint256 private constant STATE_WORDS_SIZE = 256;

    // ------------------------------------------------------------------------------------------------------------
    // Parameters and storage
    // ------------------------------------------------------------------------------------------------------------

    /// @notice The ERC-20 of stakes, escrows and payments.
    address public immutable token;
    /// @notice Stake per registered GPU.
    uint128 public immutable stakePerGpu;
    /// @notice Seconds between `beginUnbonding` and `withdrawStake`.
    uint64 public immutable unbondingDelay;
    /// @notice Seconds a unilateral close waits for higher states.
    uint64 public immutable challengeWindow;
    /// @notice Seconds between publishing a release and its use.
    uint64 public immutable releaseDelay;
    /// @notice Blocks per attestation epoch.
    uint64 public immutable epochNonceRotationBlocks;
    /// @notice Blocks between a batch commit and its sample block.
    uint64 public immutable commitRevealWindow;
    /// @notice Blocks after the sample block during which a batch can be revealed.
    uint64 public immutable revealWindow;
    /// @notice Leaves revealed per batch (fewer when the batch is smaller).
    uint32 public immutable sampleSize;
    /// @notice The block epochs count from.
    uint256 public immutable genesisBlock;

    uint256 private immutable _cachedChainId;
    bytes32 private immutable _cachedDomainSeparator;
    address private immutable _self;

    /// @notice Release registry owner.
    address public owner;
    /// @notice Owner-elect until it accepts.
    address public pendingOwner;
    /// @notice Slashed stake kept out of circulation (the half not paid to reporters).
    uint256 public slashedBurned;

    /// @notice Hosts by operator account.
    mapping(address => Host) public hosts;
    /// @notice Proof-of-useful-work credit by operator account.
    mapping(address => Credit) public credits;
    /// @notice Operator of each registered GPU id hash.
    mapping(bytes32 => address) public gpuOwner;
    /// @notice Attested receipt keys by `host_key_id`.
    mapping(bytes32 => HostKey) public hostKeys;
    /// @notice Releases by id.
    mapping(bytes32 => Release) public releases;
    /// @notice Attestations by operator and epoch.
    mapping(address => mapping(uint64 => Attestation)) public attestations;
    /// @notice Recorded epoch nonces.
    mapping(uint64 => bytes32) public epochNonces;
    /// @notice Channels by id.
    mapping(bytes32 => Channel) public channels;
    /// @notice Batches by `keccak256(abi.encode(host, root))`.
    mapping(bytes32 => Batch) public batches;

    constructor(Params memory p) {
        if (
            p.token.code.length == 0 || p.owner == address(0) || p.challengeWindow == 0
                || p.epochNonceRotationBlocks == 0 || p.revealWindow == 0 || p.revealWindow > 256
                || p.sampleSize == 0 || p.sampleSize > 64 || p.challengeWindow > type(uint32).max
        ) revert InvalidParams();
        token = p.token;
        owner = p.owner;
        stakePerGpu = p.stakePerGpu;
        unbondingDelay = p.unbondingDelay;
        challengeWindow = p.challengeWindow;
        releaseDelay = p.releaseDelay;
        epochNonceRotationBlocks = p.epochNonceRotationBlocks;
        commitRevealWindow = p.commitRevealWindow;
        revealWindow = p.revealWindow;
        sampleSize = p.sampleSize;
        genesisBlock = block.number;
        _cachedChainId = block.chainid;
        _self = address(this);
        _cachedDomainSeparator = _buildDomainSeparator();
        emit OwnershipTransferred(address(0), p.owner);
    }

    // ------------------------------------------------------------------------------------------------------------
    // Ownership and releases
    // ------------------------------------------------------------------------------------------------------------

    modifier onlyOwner() {
        if (msg.sender != owner) revert NotOwner();
        _;
    }

    /// @notice Starts handing the release registry to `newOwner`, who must accept.
    function transferOwnership(address newOwner) external onlyOwner {
        pendingOwner = newOwner;
        emit OwnershipTransferStarted(msg.sender, newOwner);
    }

    /// @notice Accepts ownership.
    function acceptOwnership() external {
        if (msg.sender != pendingOwner) revert NotPendingOwner();
        emit OwnershipTransferred(owner, msg.sender);
        owner = msg.sender;
        pendingOwner = address(0);
    }

    /// @notice Publishes a release (hash of `reference/<release>.json`); usable after `releaseDelay`.
    function publishRelease(bytes32 releaseId, bytes32 referenceHash, uint64 notBefore, uint64 notAfter)
        external
        onlyOwner
    {
        if (releases[releaseId].effectiveAt != 0) revert ReleaseExists();
        if (notAfter <= notBefore) revert BadReleaseWindow();
        uint64 effectiveAt = uint64(block.timestamp) + releaseDelay;
        releases[releaseId] = Release(referenceHash, notBefore, notAfter, effectiveAt, false);
        emit ReleasePublished(releaseId, referenceHash, notBefore, notAfter, effectiveAt);
    }

    /// @notice Revokes a release at once (no delay: revocation only ever narrows what is accepted).
    function revokeRelease(bytes32 releaseId) external onlyOwner {
        Release storage r = releases[releaseId];
        if (r.effectiveAt == 0) revert ReleaseUnknown();
        r.revoked = true;
        emit ReleaseRevokedEvent(releaseId);
    }

    /// @notice Reverts unless the release is published, effective, unrevoked and within its validity window.
    function checkRelease(bytes32 releaseId) public view {
        Release memory r = releases[releaseId];
        if (r.effectiveAt == 0) revert ReleaseUnknown();
        if (r.revoked) revert ReleaseRevoked();
        if (block.timestamp < r.effectiveAt) revert ReleaseNotYetEffective();
        if (block.timestamp < r.notBefore || block.timestamp > r.notAfter) revert ReleaseOutOfValidity();
    }

    // ------------------------------------------------------------------------------------------------------------
    // Hosts
    // ------------------------------------------------------------------------------------------------------------

    /// @notice Registers the sender as a host operator with the given GPU id hashes and locks
    /// `stakePerGpu * gpuIdHashes.length` of the token (approve first).
    function registerHost(bytes32[] calldata gpuIdHashes) external {
        if (hosts[msg.sender].status != HostStatus.None) revert HostAlreadyRegistered();
        uint256 n = gpuIdHashes.length;
        if (n == 0) revert NoGpus();
        for (uint256 i; i < n; ++i) {
            bytes32 g = gpuIdHashes[i];
            if (g == bytes32(0) || gpuOwner[g] != address(0)) revert GpuAlreadyRegistered(g);
            gpuOwner[g] = msg.sender;
        }
        uint256 stake = uint256(stakePerGpu) * n;
        if (stake > type(uint128).max) revert InvalidParams();
        hosts[msg.sender] = Host(uint128(stake), uint32(n), 0, HostStatus.Active);
        _pull(msg.sender, stake);
        emit HostRegistered(msg.sender, gpuIdHashes, stake);
    }

    /// @notice Starts the unbonding delay; the host takes no new channels or attestations from now on.
    function beginUnbonding() external {
        Host storage h = _activeHost(msg.sender);
        if (h.unbondingAt != 0) revert AlreadyUnbonding();
        uint40 withdrawableAt = uint40(block.timestamp + unbondingDelay);
        h.unbondingAt = withdrawableAt;
        emit UnbondingStarted(msg.sender, withdrawableAt);
    }

    /// @notice After the unbonding delay: frees the GPU id hashes (exactly the registered ones) and returns the
    /// stake.
    function withdrawStake(bytes32[] calldata gpuIdHashes) external {
        Host memory h = hosts[msg.sender];
        if (h.status == HostStatus.None) revert HostNotRegistered();
        if (h.status == HostStatus.Slashed) revert HostIsSlashed();
        if (h.unbondingAt == 0) revert NotUnbonding();
        if (block.timestamp < h.unbondingAt) revert UnbondingNotOver();
        if (gpuIdHashes.length != h.gpuCount) revert GpuListMismatch();
        for (uint256 i; i < gpuIdHashes.length; ++i) {
            bytes32 g = gpuIdHashes[i];
            if (gpuOwner[g] != msg.sender) revert GpuListMismatch();
            delete gpuOwner[g];
        }
        delete hosts[msg.sender];
        _push(msg.sender, h.stake);
        emit StakeWithdrawn(msg.sender, h.stake);
    }

    /// @notice Slashes the operator of an attested key that signed two different receipts for the same
    /// (channel, call_seq). Half the stake goes to the caller, the other half is kept out of circulation.
    function slashEquivocation(
        Receipt calldata a,
        bytes32 ra,
        bytes32 sa,
        Receipt calldata b,
        bytes32 rb,
        bytes32 sb
    ) external {
        address operator = _equivocator(a, ra, sa, b, rb, sb);
        Host storage h = hosts[operator];
        uint256 stake = h.stake;
        if (stake == 0) revert NothingToSlash();
        h.stake = 0;
        h.status = HostStatus.Slashed;
        uint256 reward = stake / 2;
        slashedBurned += stake - reward;
        _push(msg.sender, reward);
        emit HostSlashed(operator, a.hostKeyId, a.channelId, a.callSeq, msg.sender, stake, reward);
    }

    /// @dev The operator of the key that signed both receipts, after checking they are two different receipts for
    /// the same (channel, call_seq) by the same attested key.
    function _equivocator(
        Receipt calldata a,
        bytes32 ra,
        bytes32 sa,
        Receipt calldata b,
        bytes32 rb,
        bytes32 sb
    ) private view returns (address operator) {
        bytes32 da = _receiptDigest(a);
        bytes32 db = _receiptDigest(b);
        if (a.hostKeyId != b.hostKeyId) revert NotSameKey();
        if (a.channelId != b.channelId || a.callSeq != b.callSeq) revert NotSameCall();
        if (da == db) revert SameReceipt();
        HostKey storage key = hostKeys[a.hostKeyId];
        operator = key.operator;
        if (operator == address(0)) revert UnknownHostKey();
        _p256Verify(da, ra, sa, key.x, key.y);
        _p256Verify(db, rb, sb, key.x, key.y);
    }

    // ------------------------------------------------------------------------------------------------------------
    // Epochs and attestations
    // ------------------------------------------------------------------------------------------------------------

    /// @notice The current attestation epoch.
    function currentEpoch() public view returns (uint64) {
        return uint64((block.number - genesisBlock) / epochNonceRotationBlocks);
    }

    /// @notice The nonce of `epoch`: the recorded one, or for the current epoch the value recording would fix
    /// now (`recorded` false; it is stable as long as the block before the epoch's first block is among the last
    /// 256, otherwise call `recordEpochNonce` first).
    function epochNonce(uint64 epoch) public view returns (bytes32 nonce, bool recorded) {
        nonce = epochNonces[epoch];
        if (nonce != bytes32(0)) return (nonce, true);
        if (epoch != currentEpoch()) return (bytes32(0), false);
        return (_freshNonce(epoch), false);
    }

    /// @notice Fixes the current epoch's nonce (idempotent) and returns it.
    function recordEpochNonce() external returns (uint64 epoch, bytes32 nonce) {
        epoch = currentEpoch();
        nonce = _recordEpochNonce(epoch);
    }

    /// @notice Binds the sender's per-boot keyset (protobuf `Keyset` bytes, protocol section 2) to the current
    /// epoch: checks the keyset's chain id, settlement and host account, that `hostKeyId` is SHA-256 of its
    /// receipt key and that the key is on P-256, and that the release is usable. The evidence bundle (with
    /// `Freshness` kind 2 carrying this epoch's nonce) stays off chain at `uri`; `bundleHash` commits to it.
    function submitAttestation(
        bytes calldata keyset,
        bytes32 hostKeyId,
        uint64 epoch,
        bytes32 bundleHash,
        bytes32 releaseId,
        string calldata uri
    ) external {
        if (_activeHost(msg.sender).unbondingAt != 0) revert HostUnbonding();
        uint64 current = currentEpoch();
        if (epoch != current) revert WrongEpoch(current);
        checkRelease(releaseId);
        bytes32 keysetHash = _bindKeyset(keyset, hostKeyId, epoch);
        bytes32 nonce = _recordEpochNonce(epoch);
        attestations[msg.sender][epoch] = Attestation(keysetHash, hostKeyId, bundleHash, releaseId);
        emit AttestationSubmitted(msg.sender, epoch, hostKeyId, keysetHash, bundleHash, releaseId, nonce, uri);
    }

    // ------------------------------------------------------------------------------------------------------------
    // Channels
    // ------------------------------------------------------------------------------------------------------------

    /// @notice `keccak(word(chainId) || word(this) || word(tenant) || word(host) || salt)`.
    function channelId(address tenant, address host, bytes32 salt) public view returns (bytes32) {
        return keccak256(abi.encode(block.chainid, address(this), tenant, host, salt));
    }

    /// @notice Opens a channel from the sender (tenant) to a bonded host's operator account and escrows `escrow`
    /// of the token (approve first). The channel id is `channelId(msg.sender, host, salt)` and is never reused.
    function openChannel(
        address host,
        bytes32 salt,
        uint128 escrow,
        uint32 maxCalls,
        uint96 maxPerCall,
        uint40 deadline
    ) external returns (bytes32 id) {
        Host memory h = hosts[host];
        if (h.status == HostStatus.None) revert HostNotRegistered();
        if (h.status == HostStatus.Slashed) revert HostIsSlashed();
        if (h.unbondingAt != 0) revert HostUnbonding();
        if (escrow == 0 || maxCalls == 0 || maxPerCall == 0) revert InvalidChannelParams();
        if (deadline <= block.timestamp) revert DeadlineInPast();
        id = channelId(msg.sender, host, salt);
        Channel storage c = channels[id];
        if (c.status != ChannelStatus.None) revert ChannelIdUsed();
        c.escrow = escrow;
        c.maxPerCall = maxPerCall;
        c.maxCalls = maxCalls;
        c.time = deadline;
        c.status = ChannelStatus.Open;
        _pull(msg.sender, escrow);
        emit ChannelOpened(id, msg.sender, host, salt, escrow, maxCalls, maxPerCall, deadline);
    }

    /// @notice Pays the host up to a tenant-signed state with a higher turn. Anyone may call. While the channel
    /// is closing this is the challenge: a higher turn replaces the current one.
    function claim(bytes32 salt, ChannelState calldata state, bytes calldata tenantSignature) external {
        (bytes32 id,) = _checkState(salt, state, tenantSignature);
        Channel memory c = channels[id];
        _requireClaimable(c);
        _advance(id, c, state.host, state.turn, state.cumulative, state.escrowCap);
    }

    /// @notice As `claim`, plus the host-signed receipt of the next call on top of the state, so the last call
    /// (which the tenant may not have counter-signed) is paid too.
    function claimWithReceipt(
        bytes32 salt,
        ChannelState calldata state,
        bytes calldata tenantSignature,
        Receipt calldata receipt,
        bytes32 r,
        bytes32 s
    ) external {
        (bytes32 id,) = _checkState(salt, state, tenantSignature);
        Channel memory c = channels[id];
        _requireClaimable(c);
        bytes32 digest = _receiptDigest(receipt);
        if (receipt.version != RECEIPT_VERSION) revert UnsupportedReceiptVersion();
        if (receipt.channelId != id) revert ReceiptWrongChannel();
        if (receipt.callSeq != uint256(state.turn) + 1) revert ReceiptNotNext();
        if (receipt.prevReceiptHash != state.lastReceiptHash) revert ReceiptPrevHash();
        _checkAmount(receipt);
        if (uint256(state.cumulative) + receipt.amount != receipt.cumulative) revert ReceiptCumulative();
        if (receipt.amount > c.maxPerCall) revert OverMaxPerCall();
        _verifyHostKey(digest, r, s, receipt.hostKeyId, state.host);
        _advance(id, c, state.host, receipt.callSeq, receipt.cumulative, state.escrowCap);
    }

    /// @notice Cooperative close with a final state signed by the tenant and counter-signed by the host (P-256,
    /// by any receipt key the host's operator attested; no host signature is needed when the operator itself
    /// sends the transaction). Pays the host, refunds the tenant, closes the id for good.
    function closeChannel(
        bytes32 salt,
        ChannelState calldata state,
        bytes calldata tenantSignature,
        bytes32 hostKeyId,
        bytes32 r,
        bytes32 s
    ) external {
        (bytes32 id, bytes32 digest) = _checkState(salt, state, tenantSignature);
        if (!state.isFinal) revert NotFinal();
        Channel memory c = channels[id];
        if (c.status == ChannelStatus.None) revert ChannelUnknown();
        if (c.status == ChannelStatus.Closed) revert ChannelClosed();
        if (msg.sender != state.host) _verifyHostKey(digest, r, s, hostKeyId, state.host);
        uint64 turn = state.turn;
        uint128 cumulative = state.cumulative;
        if (turn < c.turn) revert StaleState();
        _checkLimits(c, turn, cumulative, state.escrowCap);
        _settle(id, c, state.host, state.tenant, turn, cumulative, true);
    }

    /// @notice Starts a unilateral close, by the tenant or the host: from now on (or from the deadline, if that
    /// passed) the challenge window runs, during which `claim` with a higher turn still pays the host.
    function startClose(address tenant, address host, bytes32 salt) external {
        if (msg.sender != tenant && msg.sender != host) revert NotParty();
        bytes32 id = channelId(tenant, host, salt);
        Channel storage c = channels[id];
        ChannelStatus status = c.status;
        if (status == ChannelStatus.None) revert ChannelUnknown();
        if (status == ChannelStatus.Closed) revert ChannelClosed();
        if (status == ChannelStatus.Closing) revert ChannelClosing();
        uint256 from = block.timestamp < c.time ? block.timestamp : c.time;
        uint40 closeAt = uint40(from + challengeWindow);
        c.time = closeAt;
        c.status = ChannelStatus.Closing;
        emit CloseStarted(id, msg.sender, c.turn, c.paid, closeAt);
    }

    /// @notice Ends a channel whose challenge window is over (after `startClose`, or after the deadline plus the
    /// challenge window): refunds the tenant what was not paid to the host. Anyone may call.
    function finalize(address tenant, address host, bytes32 salt) external {
        bytes32 id = channelId(tenant, host, salt);
        Channel memory c = channels[id];
        if (c.status == ChannelStatus.None) revert ChannelUnknown();
        if (c.status == ChannelStatus.Closed) revert ChannelClosed();
        if (c.status == ChannelStatus.Open) {
            if (block.timestamp < uint256(c.time) + challengeWindow) revert ChannelNotExpired();
        } else if (block.timestamp < c.time) {
            revert WindowNotOver();
        }
        _settle(id, c, host, tenant, c.turn, c.paid, false);
    }

    // ------------------------------------------------------------------------------------------------------------
    // Receipt batches
    // ------------------------------------------------------------------------------------------------------------

    /// @notice Commits a batch of the sender's receipts: the Merkle sum root, the number of receipts and their
    /// total amount (layout in the contracts README).
    function commitReceipts(bytes32 root, uint32 count, uint128 total) external {
        HostStatus status = hosts[msg.sender].status;
        if (status == HostStatus.None) revert HostNotRegistered();
        if (status == HostStatus.Slashed) revert HostIsSlashed();
        if (count == 0) revert EmptyBatch();
        Batch storage b = batches[_batchKey(msg.sender, root)];
        if (b.status != BatchStatus.None) revert BatchExists();
        uint64 commitBlock = uint64(block.number);
        b.count = count;
        b.total = total;
        b.commitBlock = commitBlock;
        b.status = BatchStatus.Committed;
        emit ReceiptsCommitted(msg.sender, root, count, total, commitBlock);
    }

    /// @notice The leaf indices to reveal for a batch, in order (index `count - 1` first, then the ones picked by
    /// the sample block's hash). Reverts until the sample block is mined.
    function sampleIndices(address host, bytes32 root) external view returns (uint256[] memory indices) {
        Batch memory b = batches[_batchKey(host, root)];
        if (b.status == BatchStatus.None) revert BatchUnknown();
        bytes32 seed = _sampleSeed(b);
        uint256 k = b.count < sampleSize ? b.count : sampleSize;
        indices = new uint256[](k);
        for (uint256 j; j < k; ++j) {
            indices[j] = _sampleIndex(seed, host, root, b.count, j);
        }
    }

    /// @notice Reveals a batch's sample: for each sampled index, the receipt (signed by a key the host attested,
    /// amount = tokens times prices) and its Merkle sum proof to the committed root and total. Credits the
    /// batch to the host as useful work. Anyone may submit it for the host.
    function revealReceipts(address host, bytes32 root, Reveal[] calldata items) external {
        bytes32 key = _batchKey(host, root);
        Batch memory b = batches[key];
        if (b.status == BatchStatus.None) revert BatchUnknown();
        if (b.status != BatchStatus.Committed) revert BatchNotCommitted();
        Sample memory sample = Sample(host, root, _sampleSeed(b), b.count, b.total, _treeDepth(b.count));
        uint256 k = sample.count < sampleSize ? sample.count : sampleSize;
        if (items.length != k) revert WrongSampleCount();
        for (uint256 j; j < k; ++j) {
            _checkLeaf(items[j], sample, j);
        }
        batches[key].status = BatchStatus.Revealed;
        Credit storage cr = credits[host];
        cr.amount += b.total;
        cr.receipts += b.count;
        cr.batches += 1;
        emit ReceiptsRevealed(host, root, b.count, b.total);
    }

    /// @notice Marks a batch whose reveal window passed unrevealed as forfeited. Anyone may call.
    function forfeitBatch(address host, bytes32 root) external {
        bytes32 key = _batchKey(host, root);
        Batch memory b = batches[key];
        if (b.status == BatchStatus.None) revert BatchUnknown();
        if (b.status != BatchStatus.Committed) revert BatchNotCommitted();
        if (block.number <= uint256(b.commitBlock) + commitRevealWindow + revealWindow) revert RevealStillOpen();
        batches[key].status = BatchStatus.Forfeited;
        credits[host].forfeited += 1;
        emit BatchForfeited(host, root, b.count, b.total);
    }

    /// @notice The batch a host committed under a root.
    function batch(address host, bytes32 root) external view returns (Batch memory) {
        return batches[_batchKey(host, root)];
    }

    // ------------------------------------------------------------------------------------------------------------
    // Digests and signature checks (views, so off-chain code can compare its own digests with these)
    // ------------------------------------------------------------------------------------------------------------

    /// @notice The EIP-712 domain separator: name "dait", version "1", this chain and this contract.
    function domainSeparator() public view returns (bytes32) {
        if (block.chainid == _cachedChainId && address(this) == _self) return _cachedDomainSeparator;
        return _buildDomainSeparator();
    }

    /// @notice A receipt's EIP-712 digest (its receipt hash).
    function receiptDigest(Receipt calldata receipt) external view returns (bytes32) {
        return _receiptDigest(receipt);
    }

    /// @notice A channel state's EIP-712 digest.
    function channelStateDigest(ChannelState calldata state) external view returns (bytes32) {
        return _hashTyped(_stateStructHash(state));
    }

    /// @notice Checks a P-256 signature over a digest as every on-chain check does (low `s`, P256VERIFY, fail
    /// closed). Returns true or reverts with `HostSignatureHighS` or `BadHostSignature`.
    function verifyHostSignature(bytes32 digest, bytes32 r, bytes32 s, bytes32 x, bytes32 y)
        external
        view
        returns (bool)
    {
        _p256Verify(digest, r, s, x, y);
        return true;
    }

    // ------------------------------------------------------------------------------------------------------------
    // Internals
    // ------------------------------------------------------------------------------------------------------------

    function _activeHost(address operator) private view returns (Host storage h) {
        h = hosts[operator];
        HostStatus status = h.status;
        if (status == HostStatus.None) revert HostNotRegistered();
        if (status == HostStatus.Slashed) revert HostIsSlashed();
    }

    function _freshNonce(uint64 epoch) private view returns (bytes32 nonce) {
        uint256 first = genesisBlock + uint256(epoch) * epochNonceRotationBlocks;
        if (first > 0) nonce = blockhash(first - 1);
        if (nonce == bytes32(0)) nonce = blockhash(block.number - 1);
    }

    function _recordEpochNonce(uint64 epoch) private returns (bytes32 nonce) {
        nonce = epochNonces[epoch];
        if (nonce == bytes32(0)) {
            nonce = _freshNonce(epoch);
            epochNonces[epoch] = nonce;
            emit EpochNonceRecorded(epoch, nonce);
        }
    }

    /// @dev Reads a base-128 varint of at most 10 bytes (a uint64) at `i`.
    function _varint(bytes calldata b, uint256 i) private pure returns (uint256 v, uint256 next) {
        for (uint256 shift; shift < 70; shift += 7) {
            if (i >= b.length) revert MalformedKeyset();
            uint256 byte_ = uint8(b[i]);
            ++i;
            v |= (byte_ & 0x7f) << shift;
            if (byte_ < 0x80) {
                if (v > type(uint64).max) revert MalformedKeyset();
                return (v, i);
            }
        }
        revert MalformedKeyset();
    }

    /// @dev The keyset fields the contract checks.
    struct KeysetFields {
        uint256 version;
        uint256 chainId;
        address settlement;
        address account;
        bytes32 x;
        bytes32 y;
        bool haveKey;
    }

    /// @dev Walks a protobuf `Keyset` (fields 1-9 in order, each at most once, no unknown field), checks version
    /// 1, chain id, settlement and host account, and returns the receipt key's coordinates.
    function _parseKeyset(bytes calldata k) private view returns (bytes32, bytes32) {
        KeysetFields memory f;
        uint256 i;
        uint256 last;
        while (i < k.length) {
            uint256 tag;
            (tag, i) = _varint(k, i);
            uint256 field = tag >> 3;
            if (field <= last || field > 9) revert MalformedKeyset();
            last = field;
            if (field == 1 || field == 5 || field == 7) {
                if (tag & 7 != 0) revert MalformedKeyset();
                uint256 v;
                (v, i) = _varint(k, i);
                if (field == 1) f.version = v;
                else if (field == 5) f.chainId = v;
            } else {
                if (tag & 7 != 2) revert MalformedKeyset();
                i = _keysetBytesField(k, i, field, f);
            }
        }
        if (f.version != 1 || !f.haveKey) revert MalformedKeyset();
        if (f.chainId != block.chainid) revert KeysetChainIdMismatch();
        if (f.settlement != address(this)) revert KeysetSettlementMismatch();
        if (f.account != msg.sender) revert KeysetOperatorMismatch();
        return (f.x, f.y);
    }

    /// @dev Reads the length-delimited keyset field `field` at `i` into `f`; returns the offset after it.
    function _keysetBytesField(bytes calldata k, uint256 i, uint256 field, KeysetFields memory f)
        private
        pure
        returns (uint256)
    {
        uint256 len;
        (len, i) = _varint(k, i);
        if (len > k.length - i) revert MalformedKeyset();
        bytes calldata value = k[i:i + len];
        if (field == 2) {
            if (len != 65 || value[0] != 0x04) revert MalformedKeyset();
            f.x = bytes32(value[1:33]);
            f.y = bytes32(value[33:65]);
            f.haveKey = true;
        } else if (field == 6 || field == 9) {
            if (len != 20) revert MalformedKeyset();
            if (field == 6) f.settlement = address(bytes20(value));
            else f.account = address(bytes20(value));
        } else if (field == 8) {
            if (len != 16) revert MalformedKeyset();
        }
        return i + len;
    }

    /// @dev Checks the keyset (see `submitAttestation`), records its receipt key under `hostKeyId` for the sender
    /// and returns the keyset hash.
    function _bindKeyset(bytes calldata keyset, bytes32 hostKeyId, uint64 epoch) private returns (bytes32) {
        (bytes32 x, bytes32 y) = _parseKeyset(keyset);
        if (sha256(abi.encodePacked(bytes1(0x04), x, y)) != hostKeyId) revert HostKeyIdMismatch();
        if (!_onCurve(uint256(x), uint256(y))) revert BadReceiptKey();
        HostKey storage key = hostKeys[hostKeyId];
        address keyOperator = key.operator;
        if (keyOperator == address(0)) {
            key.operator = msg.sender;
            key.x = x;
            key.y = y;
        } else if (keyOperator != msg.sender) {
            revert HostKeyOwnedByOther();
        }
        key.lastEpoch = epoch;
        return sha256(abi.encodePacked("dait/v1/keyset", keyset));
    }

    function _onCurve(uint256 x, uint256 y) private pure returns (bool) {
        if (x >= P256_P || y >= P256_P) return false;
        uint256 lhs = mulmod(y, y, P256_P);
        uint256 rhs = addmod(
            addmod(mulmod(mulmod(x, x, P256_P), x, P256_P), mulmod(P256_P - 3, x, P256_P), P256_P), P256_B, P256_P
        );
        return lhs == rhs;
    }

    function _requireClaimable(Channel memory c) private view {
        if (c.status == ChannelStatus.Open) {
            if (block.timestamp >= uint256(c.time) + challengeWindow) revert ChannelExpired();
        } else if (c.status == ChannelStatus.Closing) {
            if (block.timestamp >= c.time) revert ChallengeWindowOver();
        } else if (c.status == ChannelStatus.None) {
            revert ChannelUnknown();
        } else {
            revert ChannelClosed();
        }
    }

    function _checkLimits(Channel memory c, uint64 turn, uint128 cumulative, uint128 escrowCap) private pure {
        if (cumulative < c.paid) revert CumulativeBelowPaid();
        if (turn > c.maxCalls) revert OverMaxCalls();
        if (cumulative > escrowCap) revert OverEscrowCap();
        if (cumulative > c.escrow) revert OverEscrow();
        if (cumulative > uint256(turn) * c.maxPerCall) revert OverMaxPerCall();
    }

    function _advance(bytes32 id, Channel memory c, address host, uint64 turn, uint128 cumulative, uint128 escrowCap)
        private
    {
        if (turn <= c.turn) revert StaleState();
        _checkLimits(c, turn, cumulative, escrowCap);
        uint256 pay = cumulative - c.paid;
        Channel storage sc = channels[id];
        sc.paid = cumulative;
        sc.turn = turn;
        if (pay != 0) _push(host, pay);
        emit Claimed(id, turn, cumulative, pay);
    }

    function _settle(
        bytes32 id,
        Channel memory c,
        address host,
        address tenant,
        uint64 turn,
        uint128 cumulative,
        bool cooperative
    ) private {
        uint256 toHost = cumulative - c.paid;
        uint256 toTenant = c.escrow - cumulative;
        channels[id] = Channel(0, 0, 0, cumulative, turn, 0, ChannelStatus.Closed);
        if (toHost != 0) _push(host, toHost);
        if (toTenant != 0) _push(tenant, toTenant);
        emit ChannelSettled(id, turn, cumulative, toHost, toTenant, cooperative);
    }

    /// @dev Checks the state's words, its channel id derivation and the tenant signature; returns the id and the
    /// state's digest.
    function _checkState(bytes32 salt, ChannelState calldata state, bytes calldata signature)
        private
        view
        returns (bytes32 id, bytes32 digest)
    {
        digest = _hashTyped(_stateStructHash(state));
        address tenant = state.tenant;
        id = channelId(tenant, state.host, salt);
        if (id != state.channelId) revert WrongChannelId();
        if (signature.length != 65) revert BadTenantSignature();
        bytes32 r = bytes32(signature[0:32]);
        bytes32 s = bytes32(signature[32:64]);
        uint8 v = uint8(signature[64]);
        if (uint256(s) > SECP256K1_N_HALF) revert TenantSignatureHighS();
        if (v != 27 && v != 28) revert BadTenantSignature();
        address signer = ecrecover(digest, v, r, s);
        if (signer == address(0) || signer != tenant) revert BadTenantSignature();
    }

    function _checkAmount(Receipt calldata receipt) private pure {
        uint256 expected =
            uint256(receipt.tokensIn) * receipt.priceIn + uint256(receipt.tokensOut) * receipt.priceOut;
        if (expected != receipt.amount) revert ReceiptAmount();
    }

    function _verifyHostKey(bytes32 digest, bytes32 r, bytes32 s, bytes32 hostKeyId, address operator)
        private
        view
    {
        HostKey storage key = hostKeys[hostKeyId];
        address keyOperator = key.operator;
        if (keyOperator == address(0)) revert UnknownHostKey();
        if (keyOperator != operator) revert WrongHostKey();
        _p256Verify(digest, r, s, key.x, key.y);
    }

    /// @dev P256VERIFY with low-s; fails closed when the precompile is absent (empty return data) or says no.
    function _p256Verify(bytes32 digest, bytes32 r, bytes32 s, bytes32 x, bytes32 y) private view {
        if (uint256(s) > P256_N_HALF) revert HostSignatureHighS();
        bool ok;
        address precompile = P256VERIFY;
        assembly ("memory-safe") {
            let p := mload(0x40)
            mstore(p, digest)
            mstore(add(p, 0x20), r)
            mstore(add(p, 0x40), s)
            mstore(add(p, 0x60), x)
            mstore(add(p, 0x80), y)
            mstore(0x00, 0)
            ok := staticcall(gas(), precompile, p, 0xa0, 0x00, 0x20)
            ok := and(ok, and(eq(returndatasize(), 0x20), eq(mload(0x00), 1)))
        }
        if (!ok) revert BadHostSignature();
    }

    function _buildDomainSeparator() private view returns (bytes32) {
        return keccak256(abi.encode(DOMAIN_TYPEHASH, NAME_HASH, VERSION_HASH, block.chainid, address(this)));
    }

    function _hashTyped(bytes32 structHash) private view returns (bytes32 digest) {
        bytes32 separator = domainSeparator();
        assembly ("memory-safe") {
            let p := mload(0x40)
            mstore(p, 0x1901000000000000000000000000000000000000000000000000000000000000)
            mstore(add(p, 0x02), separator)
            mstore(add(p, 0x22), structHash)
            digest := keccak256(p, 0x42)
        }
    }

    /// @dev EIP-712 `hashStruct(receipt)`: the type hash and the 22 calldata words, after checking that each
    /// narrow member's word is in its type's range (so one receipt has exactly one encoding).
    function _receiptStructHash(Receipt calldata receipt) private pure returns (bytes32 h) {
        bool bad;
        bytes32 typeHash = RECEIPT_TYPEHASH;
        assembly ("memory-safe") {
            bad := shr(32, calldataload(receipt))
            bad := or(bad, shr(64, calldataload(add(receipt, 0x40))))
            bad := or(bad, shr(64, calldataload(add(receipt, 0x160))))
            bad := or(bad, shr(64, calldataload(add(receipt, 0x180))))
            bad := or(bad, shr(128, calldataload(add(receipt, 0x1a0))))
            bad := or(bad, shr(128, calldataload(add(receipt, 0x1c0))))
            bad := or(bad, shr(128, calldataload(add(receipt, 0x1e0))))
            bad := or(bad, shr(128, calldataload(add(receipt, 0x200))))
            bad := or(bad, shr(64, calldataload(add(receipt, 0x240))))
            bad := or(bad, shr(64, calldataload(add(receipt, 0x260))))
            bad := or(bad, shr(1, calldataload(add(receipt, 0x2a0))))
            let p := mload(0x40)
            mstore(p, typeHash)
            calldatacopy(add(p, 0x20), receipt, RECEIPT_WORDS_SIZE)
            h := keccak256(p, add(RECEIPT_WORDS_SIZE, 0x20))
        }
        if (bad) revert MalformedInput();
    }

    function _receiptDigest(Receipt calldata receipt) private view returns (bytes32) {
        return _hashTyped(_receiptStructHash(receipt));
    }

    /// @dev EIP-712 `hashStruct(state)` over the 8 calldata words, range-checked as for receipts.
    function _stateStructHash(ChannelState calldata state) private pure returns (bytes32 h) {
        bool bad;
        bytes32 typeHash = CHANNEL_STATE_TYPEHASH;
        assembly ("memory-safe") {
            bad := shr(64, calldataload(add(state, 0x20)))
            bad := or(bad, shr(128, calldataload(add(state, 0x40))))
            bad := or(bad, shr(128, calldataload(add(state, 0x60))))
            bad := or(bad, shr(160, calldataload(add(state, 0xa0))))
            bad := or(bad, shr(160, calldataload(add(state, 0xc0))))
            bad := or(bad, shr(1, calldataload(add(state, 0xe0))))
            let p := mload(0x40)
            mstore(p, typeHash)
            calldatacopy(add(p, 0x20), state, STATE_WORDS_SIZE)
            h := keccak256(p, add(STATE_WORDS_SIZE, 0x20))
        }
        if (bad) revert MalformedInput();
    }

    function _batchKey(address host, bytes32 root) private pure returns (bytes32) {
        return keccak256(abi.encode(host, root));
    }

    /// @dev The hash of block `commitBlock + commitRevealWindow`, within the reveal window only.
    function _sampleSeed(Batch memory b) private view returns (bytes32 seed) {
        uint256 seedBlock = uint256(b.commitBlock) + commitRevealWindow;
        if (block.number <= seedBlock) revert RevealTooEarly();
        if (block.number > seedBlock + revealWindow) revert RevealTooLate();
        seed = blockhash(seedBlock);
    }

    /// @dev Sample `j`: index `count - 1` for j = 0 (it checks that everything after the last leaf is empty),
    /// else `keccak(abi.encode(seed, host, root, j)) mod count`.
    function _sampleIndex(bytes32 seed, address host, bytes32 root, uint256 count, uint256 j)
        private
        pure
        returns (uint256)
    {
        if (j == 0) return count - 1;
        return uint256(keccak256(abi.encode(seed, host, root, j))) % count;
    }

    /// @dev ceil(log2(count)); a single leaf is its own root.
    function _treeDepth(uint256 count) private pure returns (uint256 depth) {
        while ((uint256(1) << depth) < count) ++depth;
    }

    function _checkLeaf(Reveal calldata item, Sample memory sample, uint256 j) private view {
        uint256 index = _sampleIndex(sample.seed, sample.host, sample.root, sample.count, j);
        Receipt calldata receipt = item.receipt;
        bytes32 digest = _receiptDigest(receipt);
        _checkAmount(receipt);
        _verifyHostKey(digest, item.r, item.s, receipt.hostKeyId, sample.host);
        bytes32 leaf;
        assembly ("memory-safe") {
            mstore8(0x00, 0x00)
            mstore(0x01, digest)
            leaf := keccak256(0x00, 0x21)
        }
        (bytes32 computed, uint256 sum) = _merkleSumRoot(leaf, receipt.amount, index, sample.count, sample.depth, item.proof);
        if (computed != sample.root) revert BadProof();
        if (sum != sample.total) revert TotalMismatch();
    }

    /// @dev Folds a leaf (hash, sum) up a proof of `depth` (sibling hash, sibling sum) pairs. A sibling subtree
    /// that lies entirely at or after `count` is padding and must be (0, 0).
    function _merkleSumRoot(
        bytes32 leaf,
        uint256 leafSum,
        uint256 index,
        uint256 count,
        uint256 depth,
        bytes32[] calldata proof
    ) private pure returns (bytes32 h, uint256 sum) {
        if (proof.length != 2 * depth) revert BadProof();
        h = leaf;
        sum = leafSum;
        for (uint256 level; level < depth; ++level) {
            bytes32 siblingHash = proof[2 * level];
            uint256 siblingSum = uint256(proof[2 * level + 1]);
            if (siblingSum >> 128 != 0) revert MalformedInput();
            uint256 node = index >> level;
            if (((node ^ 1) << level) >= count && (siblingHash != bytes32(0) || siblingSum != 0)) revert BadProof();
            h = node & 1 == 0 ? _node(h, siblingHash, sum, siblingSum) : _node(siblingHash, h, siblingSum, sum);
            sum += siblingSum;
            if (sum >> 128 != 0) revert TotalMismatch();
        }
    }

    /// @dev `keccak(0x01 || left || right || u128be(leftSum) || u128be(rightSum))`.
    function _node(bytes32 left, bytes32 right, uint256 leftSum, uint256 rightSum) private pure returns (bytes32 h) {
        assembly ("memory-safe") {
            let p := mload(0x40)
            mstore8(p, 0x01)
            mstore(add(p, 0x01), left)
            mstore(add(p, 0x21), right)
            mstore(add(p, 0x41), shl(128, leftSum))
            mstore(add(p, 0x51), shl(128, rightSum))
            h := keccak256(p, 0x61)
        }
    }

    function _pull(address from, uint256 amount) private {
        _callToken(abi.encodeCall(IERC20Minimal.transferFrom, (from, address(this), amount)));
    }

    function _push(address to, uint256 amount) private {
        _callToken(abi.encodeCall(IERC20Minimal.transfer, (to, amount)));
    }

    /// @dev Accepts tokens that return true or nothing; anything else, or a revert, is `TransferFailed`.
    function _callToken(bytes memory data) private {
        (bool ok, bytes memory ret) = token.call(data);
        if (!ok || (ret.length != 0 && (ret.length != 32 || abi.decode(ret, (uint256)) != 1))) {
            revert TransferFailed();
        }
    }
}
