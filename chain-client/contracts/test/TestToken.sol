// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

/// @title TestToken
/// @notice A minimal ERC-20 for tests and the demo: anyone may mint. Never deploy it where value is at stake.
/// @dev An allowance of `type(uint256).max` is never decreased (as in common ERC-20 libraries), so a tenant that
/// approves once pays the same gas for every `openChannel`.
contract TestToken {
    /// @notice ERC-20 `name`.
    string public constant name = "dait test token";
    /// @notice ERC-20 `symbol`.
    string public constant symbol = "DAITT";
    /// @notice ERC-20 `decimals`.
    uint8 public constant decimals = 18;
    /// @notice ERC-20 `totalSupply`.
    uint256 public totalSupply;
    /// @notice ERC-20 `balanceOf`.
    mapping(address => uint256) public balanceOf;
    /// @notice ERC-20 `allowance`.
    mapping(address => mapping(address => uint256)) public allowance;

    /// @notice ERC-20 `Transfer`.
    event Transfer(address indexed from, address indexed to, uint256 value);
    /// @notice ERC-20 `Approval`.
    event Approval(address indexed owner, address indexed spender, uint256 value);

    /// @notice The sender's balance is below the amount.
    error InsufficientBalance();
    /// @notice The spender's allowance is below the amount.
    error InsufficientAllowance();

    /// @notice Creates `amount` new tokens for `to`.
    function mint(address to, uint256 amount) external {
        totalSupply += amount;
        unchecked {
            balanceOf[to] += amount;
        }
        emit Transfer(address(0), to, amount);
    }

    /// @notice ERC-20 `approve`.
    function approve(address spender, uint256 amount) external returns (bool) {
        allowance[msg.sender][spender] = amount;
        emit Approval(msg.sender, spender, amount);
        return true;
    }

    /// @notice ERC-20 `transfer`.
    function transfer(address to, uint256 amount) external returns (bool) {
        _move(msg.sender, to, amount);
        return true;
    }

    /// @notice ERC-20 `transferFrom`.
    function transferFrom(address from, address to, uint256 amount) external returns (bool) {
        uint256 allowed = allowance[from][msg.sender];
        if (allowed != type(uint256).max) {
            if (allowed < amount) revert InsufficientAllowance();
            unchecked {
                allowance[from][msg.sender] = allowed - amount;
            }
        }
        _move(from, to, amount);
        return true;
    }

    function _move(address from, address to, uint256 amount) private {
        uint256 balance = balanceOf[from];
        if (balance < amount) revert InsufficientBalance();
        unchecked {
            balanceOf[from] = balance - amount;
            balanceOf[to] += amount;
        }
        emit Transfer(from, to, amount);
    }
}
