"""The fake robot's controller semantics on plain arrays (no ROS): forward, trajectory, gripper, limits."""

from __future__ import annotations

import numpy as np
import pytest

from tinyvla_ros.ros.fake_robot.controllers import (
    ArmController,
    CommandRejected,
    EquilibriumPoseController,
    ForwardPositionController,
    GripperOpeningInput,
    JointLimits,
    JointTrajectoryController,
    LimitCounter,
    Reference,
)

NAMES = ("j1", "j2", "j3")
LIMITS = JointLimits(NAMES, np.array([-1.0, -2.0, -3.0]), np.array([1.0, 2.0, 3.0]))


def at_rest(q) -> Reference:
    return Reference(np.asarray(q, dtype=np.float64), np.zeros(3))


def test_joint_limits_validation_names_the_bad_values():
    with pytest.raises(ValueError, match="lower <= upper"):
        JointLimits(("a",), np.array([1.0]), np.array([0.0]))
    with pytest.raises(ValueError, match="one entry per joint"):
        JointLimits(("a", "b"), np.array([0.0]), np.array([1.0, 2.0]))


def test_forward_rejects_wrong_length_and_nan_and_keeps_the_previous_command():
    ctrl = ForwardPositionController(LIMITS)
    assert ctrl.reference() is None
    assert not ctrl.accept([0.1, 0.2, 0.3]).any()
    with pytest.raises(CommandRejected, match="has 2 values, the controller has 3 joints"):
        ctrl.accept([0.5, 0.5])
    with pytest.raises(CommandRejected, match="finite"):
        ctrl.accept([0.5, float("nan"), 0.5])
    np.testing.assert_allclose(ctrl.reference().positions, [0.1, 0.2, 0.3])


def test_forward_holds_forever_and_clamps_out_of_limit_values():
    ctrl = ForwardPositionController(LIMITS)
    mask = ctrl.accept([1.5, 0.0, -3.5])
    assert mask.tolist() == [True, False, True]
    ref = ctrl.reference()
    np.testing.assert_allclose(ref.positions, [1.0, 0.0, -3.0])
    np.testing.assert_allclose(ref.velocities, 0.0)
    assert ctrl.reference().positions.tolist() == ref.positions.tolist()  # no timeout, ever


def test_trajectory_cubic_passes_through_points_with_their_velocities():
    ctrl = JointTrajectoryController(LIMITS)
    pos = [[0.2, 0.4, 0.6], [0.4, 0.8, 1.2]]
    vel = [[0.5, 1.0, 1.5], [0.0, 0.0, 0.0]]
    ctrl.accept(NAMES, 0.0, [0.4, 0.8], pos, vel, [[], []], now=10.0, current=at_rest([0.0, 0.0, 0.0]))
    assert ctrl.trajectory.interpolation == "cubic"
    mid = ctrl.reference(10.4)
    np.testing.assert_allclose(mid.positions, pos[0], atol=1e-12)
    np.testing.assert_allclose(mid.velocities, vel[0], atol=1e-12)
    # Between the start (at rest at 0) and the first point: a cubic, not a straight line.
    quarter = ctrl.reference(10.1).positions
    assert not np.allclose(quarter, 0.25 * np.array(pos[0]), atol=1e-3)
    end = ctrl.reference(11.5)
    np.testing.assert_allclose(end.positions, pos[1])
    np.testing.assert_allclose(end.velocities, 0.0)


def test_trajectory_positions_only_interpolates_linearly():
    ctrl = JointTrajectoryController(LIMITS)
    ctrl.accept(
        NAMES,
        0.0,
        [1.0, 2.0],
        [[0.5, 0.5, 0.5], [0.7, 0.3, 0.5]],
        [[], []],
        [[], []],
        0.0,
        at_rest([0, 0, 0]),
    )
    assert ctrl.trajectory.interpolation == "linear"
    np.testing.assert_allclose(ctrl.reference(0.5).positions, [0.25, 0.25, 0.25])
    np.testing.assert_allclose(ctrl.reference(0.5).velocities, [0.5, 0.5, 0.5])
    np.testing.assert_allclose(ctrl.reference(1.5).positions, [0.6, 0.4, 0.5])


def test_trajectory_quintic_matches_positions_velocities_and_accelerations_at_the_ends():
    ctrl = JointTrajectoryController(LIMITS)
    ctrl.accept(
        NAMES, 0.0, [1.0], [[0.6, -0.6, 1.0]], [[0.1, 0.0, -0.1]], [[0.0, 0.0, 0.0]], 0.0, at_rest([0, 0, 0])
    )
    assert ctrl.trajectory.interpolation == "quintic"
    eps = 1e-5
    np.testing.assert_allclose(ctrl.reference(eps).velocities, 0.0, atol=1e-3)
    np.testing.assert_allclose(ctrl.reference(1.0 - 1e-9).velocities, [0.1, 0.0, -0.1], atol=1e-6)
    np.testing.assert_allclose(ctrl.reference(1.0 - 1e-9).positions, [0.6, -0.6, 1.0], atol=1e-6)


def test_trajectory_replaces_on_arrival_from_the_current_reference():
    ctrl = JointTrajectoryController(LIMITS)
    ctrl.accept(NAMES, 0.0, [1.0], [[0.8, 0.8, 0.8]], [[0, 0, 0]], [[]], 0.0, at_rest([0, 0, 0]))
    halfway = ctrl.reference(0.5)
    assert 0.0 < halfway.positions[0] < 0.8 and halfway.velocities[0] > 0
    ctrl.accept(NAMES, 0.0, [1.0], [[-0.5, -0.5, -0.5]], [[0, 0, 0]], [[]], 0.5, halfway)
    # Continuous at the switch (same position and velocity), then heading to the new goal only.
    np.testing.assert_allclose(ctrl.reference(0.5 + 1e-9).positions, halfway.positions, atol=1e-6)
    np.testing.assert_allclose(ctrl.reference(0.5 + 1e-9).velocities, halfway.velocities, atol=1e-5)
    np.testing.assert_allclose(ctrl.reference(2.0).positions, [-0.5, -0.5, -0.5])


def test_trajectory_reorders_joint_names_and_refuses_partial_or_bad_goals():
    ctrl = JointTrajectoryController(LIMITS)
    ctrl.accept(("j3", "j1", "j2"), 0.0, [0.1], [[0.3, 0.1, 0.2]], [[]], [[]], 0.0, at_rest([0, 0, 0]))
    np.testing.assert_allclose(ctrl.reference(1.0).positions, [0.1, 0.2, 0.3])
    bad = [
        (("j1", "j2"), [0.1], [[0.1, 0.2]], [[]], "exactly once"),
        (NAMES, [0.2, 0.1], [[0, 0, 0], [0, 0, 0]], [[], []], "increasing"),
        (NAMES, [0.1], [[0.0, 0.0]], [[]], "3 values in every point"),
        (NAMES, [0.1, 0.2], [[0, 0, 0], [0, 0, 0]], [[0, 0, 0], []], "3 values in every point"),
        (NAMES, [0.1], [[0.0, float("inf"), 0.0]], [[]], "finite"),
    ]
    for names, times, pos, vel, match in bad:
        with pytest.raises(CommandRejected, match=match):
            ctrl.accept(names, 0.0, times, pos, vel, [[] for _ in times], 1.0, at_rest([0, 0, 0]))
    np.testing.assert_allclose(ctrl.reference(1.0).positions, [0.1, 0.2, 0.3])  # still the accepted one


def test_trajectory_stamp_in_the_future_waits_and_one_ending_in_the_past_is_rejected():
    ctrl = JointTrajectoryController(LIMITS)
    ctrl.accept(NAMES, 5.0, [1.0], [[0.5, 0.5, 0.5]], [[]], [[]], 4.0, at_rest([0.1, 0.1, 0.1]))
    np.testing.assert_allclose(ctrl.reference(4.5).positions, [0.1, 0.1, 0.1])  # before its start: hold
    np.testing.assert_allclose(ctrl.reference(5.5).positions, [0.3, 0.3, 0.3])
    with pytest.raises(CommandRejected, match="ends before now"):
        ctrl.accept(NAMES, 1.0, [1.0], [[0.5, 0.5, 0.5]], [[]], [[]], 4.0, at_rest([0, 0, 0]))


def test_empty_trajectory_cancels_and_holds_the_current_reference():
    ctrl = JointTrajectoryController(LIMITS)
    ctrl.accept(NAMES, 0.0, [1.0], [[0.8, 0.8, 0.8]], [[]], [[]], 0.0, at_rest([0, 0, 0]))
    current = ctrl.reference(0.5)
    ctrl.accept(NAMES, 0.0, [], [], [], [], 0.5, current)
    np.testing.assert_allclose(ctrl.reference(3.0).positions, current.positions)
    np.testing.assert_allclose(ctrl.reference(3.0).velocities, 0.0)


def test_trajectory_points_outside_the_limits_are_flagged_and_clamped():
    ctrl = JointTrajectoryController(LIMITS)
    mask = ctrl.accept(
        NAMES, 0.0, [0.1, 0.2], [[0, 0, 0], [0.0, 2.5, 0.0]], [[], []], [[], []], 0.0, at_rest([0, 0, 0])
    )
    assert mask.tolist() == [[False, False, False], [False, True, False]]
    ref = ctrl.reference(1.0)
    assert ref.positions[1] == 2.0 and ref.velocities[1] == 0.0


def test_gripper_opening_clamps_and_rejects():
    grip = GripperOpeningInput()
    assert grip.opening == 1.0
    assert grip.accept([0.25]) is False and grip.opening == 0.25
    assert grip.accept([1.7]) is True and grip.opening == 1.0
    with pytest.raises(CommandRejected, match="exactly 1 value"):
        grip.accept([0.1, 0.2])
    with pytest.raises(CommandRejected, match="finite"):
        grip.accept([float("nan")])


def test_limit_counter_counts_commands_and_joints():
    counter = LimitCounter()
    assert counter.record(NAMES, np.array([False, False, False])) is False
    assert counter.record(NAMES, np.array([[True, False, False], [True, False, True]])) is True
    assert counter.commands == 1 and dict(counter.per_joint) == {"j1": 2, "j3": 1}


def test_arm_controller_last_accepted_command_drives_and_rejections_are_counted():
    arm = ArmController("fr3", LIMITS, np.array([0.1, 0.2, 0.3]))
    np.testing.assert_allclose(arm.target(0.0).positions, [0.1, 0.2, 0.3])  # holds its start pose
    arm.on_forward([0.5, 0.5, 0.5])
    assert arm.active == "forward"
    with pytest.raises(CommandRejected):
        arm.on_forward([0.0])
    np.testing.assert_allclose(arm.target(1.0).positions, [0.5, 0.5, 0.5])
    arm.on_trajectory(NAMES, 0.0, [1.0], [[0.0, 0.0, 0.0]], [[]], [[]], now=1.0)
    assert arm.active == "trajectory"
    np.testing.assert_allclose(arm.target(1.5).positions, [0.25, 0.25, 0.25])  # from the forward hold
    assert arm.on_forward([9.0, 0.0, 0.0]) is True
    assert arm.counts["forward.accepted"] == 2 and arm.counts["forward.rejected"] == 1
    assert arm.violations.commands == 1
    arm.reset(np.zeros(3))
    assert arm.active == "none"
    np.testing.assert_allclose(arm.target(9.0).positions, 0.0)


def test_equilibrium_pose_is_checked_queued_once_and_held_after_solving():
    ctrl = EquilibriumPoseController("fr3_link0", 3)
    with pytest.raises(CommandRejected, match="must be in 'fr3_link0'"):
        ctrl.accept("world", [0.4, 0.0, 0.3], [0.0, 0.0, 0.0, 1.0])
    with pytest.raises(CommandRejected, match="finite"):
        ctrl.accept("fr3_link0", [0.4, float("nan"), 0.3], [0.0, 0.0, 0.0, 1.0])
    with pytest.raises(CommandRejected, match="norm 2.0000, not 1"):
        ctrl.accept("fr3_link0", [0.4, 0.0, 0.3], [0.0, 0.0, 0.0, 2.0])
    assert ctrl.take() is None and ctrl.reference() is None  # nothing accepted yet
    ctrl.accept("fr3_link0", [0.4, 0.0, 0.3], [1.0, 0.0, 0.0, 0.0])  # 180 deg about x
    xyz, rot = ctrl.take()
    np.testing.assert_allclose(xyz, [0.4, 0.0, 0.3])
    np.testing.assert_allclose(rot, np.diag([1.0, -1.0, -1.0]), atol=1e-12)
    assert ctrl.take() is None  # handed to the solver once
    assert not ctrl.solved(np.array([0.1, 0.2, 0.3]), 0.001)
    assert ctrl.solved(np.array([0.1, 0.2, 0.3]), 0.02)  # 2 cm residual: out of reach
    for _ in range(3):  # no timeout: the joint target stays
        np.testing.assert_allclose(ctrl.reference().positions, [0.1, 0.2, 0.3])
        np.testing.assert_allclose(ctrl.reference().velocities, 0.0)


def test_arm_follows_the_pose_controller_once_solved_and_clips_to_the_limits():
    arm = ArmController("a", LIMITS, np.zeros(3), pose_frame="base")
    with pytest.raises(CommandRejected):
        arm.on_pose("other", [0, 0, 0], [0, 0, 0, 1])
    assert arm.counts["pose.rejected"] == 1 and arm.active == "none"
    assert arm.on_pose("base", [0.3, 0.0, 0.2], [0, 0, 0, 1]) is False
    assert arm.active == "pose" and arm.counts["pose.accepted"] == 1
    np.testing.assert_allclose(arm.target(0.0).positions, 0.0)  # not solved yet: holds where it was
    assert arm.pose.take() is not None
    arm.pose_solved(np.array([0.5, 2.5, -0.5]), 0.0)
    np.testing.assert_allclose(arm.target(0.0).positions, [0.5, 2.0, -0.5])  # clipped to the limits
    arm.pose_solved(np.array([0.5, 0.5, 0.5]), 0.05)
    assert arm.counts["pose.unreachable"] == 1
    arm.reset(np.zeros(3))
    assert arm.active == "none" and arm.pose.reference() is None
