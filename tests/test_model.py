"""The SiamTFA network: anchors, adversarial dropout, temporal wiring, losses, bad input."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import nn

from siamtfa.config import RPNConfig
from siamtfa.model import LOSS_KEYS, STRIDES
from siamtfa.model.adversarial_dropout import AdversarialDropout, kl_from_logits
from siamtfa.model.anchors import grid_anchors
from siamtfa.model.rpn import RegionProposalNetwork
from siamtfa.ops import BoxCoder, box_iou, xywh_to_xyxy

from .conftest import small_model
from .test_ops import nms_reference, roi_align_reference

# --------------------------------------------------------------------------- anchors


@pytest.mark.parametrize(("stride", "size"), list(zip(STRIDES, [32, 64, 128, 256, 512])))
def test_anchors_count_sizes_and_centres(stride: int, size: int) -> None:
    ratios = (0.5, 1.0, 2.0)
    h, w = 3, 5
    anchors = grid_anchors((h, w), stride, size, ratios)
    assert anchors.shape == (h * w * 3, 4)
    aw = anchors[:, 2] - anchors[:, 0]
    ah = anchors[:, 3] - anchors[:, 1]
    torch.testing.assert_close(torch.sqrt(aw * ah), torch.full_like(aw, float(size)))
    torch.testing.assert_close(ah / aw, torch.tensor(ratios).repeat(h * w))
    centres = ((anchors[:, :2] + anchors[:, 2:]) / 2).view(h, w, 3, 2)
    for i in range(h):
        for j in range(w):
            expected = torch.tensor([(j + 0.5) * stride, (i + 0.5) * stride])
            torch.testing.assert_close(centres[i, j], expected.expand(3, 2))


def test_rpn_anchors_are_each_sizes_grid_anchors_and_the_cache_stays_small() -> None:
    rpn = RegionProposalNetwork(RPNConfig(), 8, STRIDES)
    for n in range(12):  # more map sizes than the cache keeps
        sizes = [(2 + n, 3), (1, 2), (1, 1), (1, 1), (1, 1)]
        for _ in range(2):  # the second time from the cache
            got = rpn.anchors(sizes, torch.device("cpu"))
            for level, (hw, stride) in enumerate(zip(sizes, STRIDES)):
                size = RPNConfig().anchor_sizes[level]
                expected = grid_anchors(hw, stride, size, RPNConfig().aspect_ratios)
                assert torch.equal(got[level], expected)
    assert len(rpn._anchors) <= 8


# --------------------------------------------------------------------------- adversarial dropout


def make_head(c: int) -> nn.Module:
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(c * 49, 64),
        nn.ReLU(),
        nn.Linear(64, 64),
        nn.ReLU(),
        nn.Linear(64, 2),
    )


@pytest.mark.parametrize("mode", ["channel", "element"])
def test_adversarial_mask_budget_and_strength(mode: str) -> None:
    c = 256 if mode == "channel" else 16
    head = make_head(c)
    drop = AdversarialDropout(mode, delta=0.05, keep_prob=0.9)
    wins = draws = 0
    for _ in range(40):
        x = torch.randn(8, c, 7, 7) * 2
        mask = drop.random_mask(x)
        ref = head(drop.apply(x, mask))
        adv = drop.adversarial_mask(x, mask, head, ref)
        flips = (adv != mask).sum(1)
        # the whole budget is spent: with L >= 256 entries far more than floor(0.05 L) flips
        # raise the divergence to first order (a mask left as it was would "win" every draw)
        assert (flips == math.floor(0.05 * mask.shape[1])).all(), flips
        assert set(adv.unique().tolist()) <= {0.0, 1.0}
        rnd = mask.clone()  # the same number of flips, at random places
        for r in range(len(mask)):
            idx = torch.randperm(mask.shape[1])[: int(flips[r])]
            rnd[r, idx] = 1 - rnd[r, idx]
        with torch.no_grad():
            d_adv = kl_from_logits(ref, head(drop.apply(x, adv)))
            d_rnd = kl_from_logits(ref, head(drop.apply(x, rnd)))
        wins += bool(d_adv > d_rnd)
        draws += 1
    assert wins / draws >= 0.95


def test_adversarial_mask_leaves_parameter_grads_untouched() -> None:
    head = make_head(256)
    head[1].weight.grad = torch.full_like(head[1].weight, 3.0)  # a pre-existing gradient
    drop = AdversarialDropout()
    x = torch.randn(4, 256, 7, 7, requires_grad=True)
    mask = drop.random_mask(x)
    drop.adversarial_mask(x, mask, head, head(drop.apply(x, mask)))
    assert torch.equal(head[1].weight.grad, torch.full_like(head[1].weight, 3.0))
    assert all(p.grad is None for name, p in head.named_parameters() if name != "1.weight")
    assert x.grad is None


# --------------------------------------------------------------------------- temporal wiring


def frame_features(model, frames: torch.Tensor, clip_len: int) -> list[torch.Tensor]:
    with torch.no_grad():
        return model.pyramid(frames, clip_len)


def changed(a: list[torch.Tensor], b: list[torch.Tensor], t: int) -> bool:
    return any(not torch.allclose(x[t], y[t], atol=1e-6) for x, y in zip(a, b))


@pytest.mark.parametrize("preset", ["lite", "mobile"])
@pytest.mark.parametrize(("temporal", "causal"), [(True, False), (True, True), (False, False)])
def test_temporal_wiring(temporal: bool, causal: bool, preset: str) -> None:
    model = small_model(temporal=temporal, causal=causal, name=preset).eval()
    frames = torch.randn(3, 3, 64, 64)
    base = frame_features(model, frames, 3)
    future = frames.clone()
    future[2] += torch.randn(3, 64, 64)
    past = frames.clone()
    past[0] += torch.randn(3, 64, 64)
    # frame t = 1 of the clip
    assert changed(base, frame_features(model, future, 3), 1) == (temporal and not causal)
    assert changed(base, frame_features(model, past, 3), 1) == temporal
    assert changed(base, frame_features(model, past, 3), 0)  # sanity: the perturbed frame


def test_template_path_is_not_shifted_and_ignores_clip_length() -> None:
    model = small_model(temporal=True).eval()
    plain = small_model(temporal=False).eval()
    plain.load_state_dict(model.state_dict())
    images = torch.randn(1, 3, 96, 96)
    boxes = torch.tensor([[20.0, 24.0, 70.0, 80.0]])
    seen = []
    model.modulator.register_forward_hook(lambda mod, args, out: seen.append(args[1].clone()))
    with torch.no_grad():
        for clip_len in (1, 3):
            model(images, boxes, torch.randn(clip_len, 3, 96, 96), clip_len)
        torch.testing.assert_close(seen[0], seen[1])
        torch.testing.assert_close(seen[0], plain.template_features(images, boxes))


# --------------------------------------------------------------------------- training step


def synthetic_batch(size: int = 448):
    """Two clips of three frames; target sizes span every FPN level's anchor size."""
    g = torch.Generator().manual_seed(0)
    sides = [24.0, 60.0, 120.0, 240.0, 440.0, 100.0]
    boxes = []
    for i, s in enumerate(sides):
        x0 = (size - s) * (0.3 + 0.1 * i) / 1.0
        boxes.append([min(x0, size - s - 1), (size - s) / 2, s, s])
    search_boxes = xywh_to_xyxy(torch.tensor(boxes))
    template_boxes = search_boxes[[0, 3]]
    return (
        torch.randn(2, 3, size, size, generator=g),
        template_boxes,
        torch.randn(6, 3, size, size, generator=g),
        search_boxes,
    )


@pytest.mark.slow
def test_training_step_losses_and_gradients() -> None:
    model = small_model().train()
    t_img, t_box, s_img, s_box = synthetic_batch()
    losses = model(t_img, t_box, s_img, 3, s_box)
    assert set(losses) == {*LOSS_KEYS, "loss"}
    for key in LOSS_KEYS:
        assert losses[key].dim() == 0 and torch.isfinite(losses[key]), key
    expected = sum(losses[k] for k in LOSS_KEYS if k != "adv") + losses["adv"]
    torch.testing.assert_close(losses["loss"], expected)
    losses["loss"].backward()
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and p.grad.abs().sum() > 0, f"no gradient for {name}"
        else:
            assert p.grad is None, f"frozen {name} got a gradient"
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert "backbone.conv1.weight" in frozen and "backbone.layer1.0.conv1.weight" in frozen
    assert "backbone.layer2.0.conv1.weight" not in frozen


def test_absent_target_frames_train_as_background() -> None:
    model = small_model().train()
    t_img, t_box, s_img, s_box = synthetic_batch(192)
    s_box[:] = torch.tensor([40.0, 40.0, 120.0, 120.0])
    present = torch.tensor([True, False, True, True, False, True])
    s_box[1] = float("nan")  # ignored: marked absent
    losses = model(t_img, t_box, s_img, 3, s_box, present)
    assert all(torch.isfinite(v) for v in losses.values())


@pytest.mark.slow
def test_short_overfit_halves_the_loss() -> None:
    model = small_model().train()
    g = torch.Generator().manual_seed(0)
    t_img = torch.randn(1, 3, 192, 192, generator=g)
    box = torch.tensor([[60.0, 50.0, 120.0, 130.0]])
    s_img = torch.randn(2, 3, 192, 192, generator=g)
    s_img[:, :, 50:130, 60:120] = t_img[:, :, 50:130, 60:120]
    s_box = torch.cat((box, box + 4))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=5e-4)
    history = []
    for _ in range(12):
        loss = model(t_img, box, s_img, 2, s_box)["loss"]
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(params, 35.0)
        opt.step()
        history.append(loss.item())
    assert sum(history[-3:]) / 3 <= 0.5 * history[0], history


def propose_reference(logits, deltas, anchors, image_size, cfg: RPNConfig) -> list[torch.Tensor]:
    """Per frame and level: top-k objectness, decode, clip, drop small or non-finite, greedy NMS;
    then the frame's survivors of all levels, best first, the first ``post_n``."""
    h, w = image_size
    out = []
    for b in range(logits[0].shape[0]):
        found = []
        for lg, dl, an in zip(logits, deltas, anchors):
            obj = lg[b, :, 1] - lg[b, :, 0]
            top = torch.argsort(obj, descending=True)[: cfg.pre_nms_top_n_test]
            boxes = BoxCoder().decode(dl[b, top], an[top])
            boxes = torch.stack(
                (
                    boxes[:, 0].clamp(0, w),
                    boxes[:, 1].clamp(0, h),
                    boxes[:, 2].clamp(0, w),
                    boxes[:, 3].clamp(0, h),
                ),
                1,
            )
            ok = [
                i
                for i in range(len(top))
                if math.isfinite(obj[top[i]])
                and boxes[i, 2] - boxes[i, 0] >= cfg.min_box_size
                and boxes[i, 3] - boxes[i, 1] >= cfg.min_box_size
            ]
            kept = nms_reference(boxes[ok].tolist(), obj[top[ok]].tolist(), cfg.nms_thresh)
            found += [(float(obj[top[ok[i]]]), boxes[ok[i]]) for i in kept]
        found.sort(key=lambda sb: -sb[0])
        out.append(torch.stack([box for _, box in found[: cfg.post_nms_top_n_test]]))
    return out


def test_proposals_match_a_per_frame_per_level_reference() -> None:
    gen = torch.Generator().manual_seed(3)
    cfg = RPNConfig(
        anchor_sizes=(16.0, 32.0, 64.0),
        pre_nms_top_n_test=12,
        post_nms_top_n_test=10,
        nms_thresh=0.5,
        min_box_size=2.0,
    )
    rpn = RegionProposalNetwork(cfg, 8, [4, 8, 16]).eval()
    frames, counts, image_size = 3, [50, 20, 7], (60, 80)  # the last level has < pre_n anchors
    anchors, logits, deltas = [], [], []
    for n in counts:
        # anchors around a few centres, so that NMS has work; some partly outside the image
        centre = torch.randint(0, 3, (n,), generator=gen).float()[:, None] * 25 + 10
        xy = centre + torch.randn(n, 2, generator=gen) * 3
        wh = torch.rand(n, 2, generator=gen) * 30 + 5
        anchors.append(torch.cat((xy - wh / 2, xy + wh / 2), 1))
        logits.append(torch.randn(frames, n, 2, generator=gen))  # distinct scores
        deltas.append(torch.randn(frames, n, 4, generator=gen) * 0.3)
    deltas[0][:, :6, 2] = -6.0  # boxes narrower than min_box_size
    logits[2][1, 3, 1] = -math.inf  # a non-finite score in a level taken whole
    got = rpn.propose(logits, deltas, anchors, image_size)
    ref = propose_reference(logits, deltas, anchors, image_size, cfg)
    assert len(got) == frames
    for g, r in zip(got, ref):
        torch.testing.assert_close(g, r)
    # the case exercises truncation to post_n and suppression by NMS
    everything = dataclasses.replace(cfg, post_nms_top_n_test=1000)
    untruncated = propose_reference(logits, deltas, anchors, image_size, everything)
    unsuppressed = dataclasses.replace(everything, nms_thresh=1.0)
    no_nms = propose_reference(logits, deltas, anchors, image_size, unsuppressed)
    for r, a, b in zip(ref, untruncated, no_nms):
        assert len(r) == cfg.post_nms_top_n_test < len(a) < len(b)
    rpn.cfg = everything
    for g, a in zip(rpn.propose(logits, deltas, anchors, image_size), untruncated):
        torch.testing.assert_close(g, a)


# --------------------------------------------------------------------------- inference, bad input


def test_inference_returns_ranked_candidates_per_frame() -> None:
    model = small_model().eval()
    t_img, t_box, s_img, _ = synthetic_batch(160)
    with torch.no_grad():
        out = model(t_img[:1], t_box[:1].clamp(max=150), s_img[:3], 3)
    assert len(out) == 3
    for det in out:
        assert det["box"].shape == (4,) and det["boxes"].shape[1] == 4
        assert torch.all(det["scores"][:-1] >= det["scores"][1:])
        torch.testing.assert_close(det["box"], det["boxes"][0])
        assert 0.0 <= float(det["score"]) <= 1.0


def test_similarity_is_the_cosine_of_trunk_roi_features_with_the_clips_template() -> None:
    # two templates, clips of 2: frames 2 and 3 are compared with the second template; the
    # reference: a naive RoIAlign on the stride-16 trunk map of separate backbone passes
    model = small_model(name="mobile").eval()
    t_img, t_box, s_img, _ = synthetic_batch(160)
    t_box = t_box.clamp(max=150)
    with torch.no_grad():
        template = model.template_features(t_img, t_box)
        appearance = model.template_appearance(t_img, t_box)
        dets = model.forward_search(template, s_img[:4], 2, appearance=appearance)
        trunk_t, trunk_s = (
            model.backbone(t_img)[2].double(),
            model.backbone(s_img[:4], 2)[2].double(),
        )
    assert trunk_t.shape[-1] == 160 // 16
    for i, det in enumerate(dets):
        k = i // 2
        ref_t = roi_align_reference(trunk_t, torch.tensor([[k, *t_box[k]]]), 7, 1 / 16, 2, True)
        assert len(det["similarity"]) == len(det["boxes"])
        for box, similarity in zip(det["boxes"][:3], det["similarity"][:3]):
            rois = torch.tensor([[i, *box.tolist()]], dtype=torch.float64)
            ref_s = roi_align_reference(trunk_s, rois, 7, 1 / 16, 2, True)
            cos = torch.nn.functional.cosine_similarity(ref_s.flatten(), ref_t.flatten(), dim=0)
            assert float(similarity) == pytest.approx(float(cos), abs=1e-4)
    with torch.no_grad():  # no appearance given: no similarity
        assert "similarity" not in model.forward_search(template, s_img[:4], 2)[0]


@pytest.mark.parametrize(
    ("template_boxes", "message"),
    [
        (torch.tensor([[10.0, 10, 50]]), r"\[1, 4\]"),
        (torch.tensor([[10.0, 10, 10, 50]]), "degenerate"),
        (torch.tensor([[50.0, 10, 10, 50]]), "degenerate"),
        (torch.tensor([[float("nan"), 10, 50, 50]]), "not finite"),
    ],
)
def test_bad_template_boxes_raise(template_boxes: torch.Tensor, message: str) -> None:
    model = small_model().eval()
    with pytest.raises(ValueError, match=message):
        model(torch.randn(1, 3, 64, 64), template_boxes, torch.randn(1, 3, 64, 64), 1)


def test_bad_images_and_search_boxes_raise() -> None:
    model = small_model()
    box = torch.tensor([[10.0, 10, 40, 40]])
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        model(torch.randn(1, 64, 64), box, torch.randn(1, 3, 64, 64), 1)
    with pytest.raises(ValueError, match="clip_len"):
        model.eval()(torch.randn(1, 3, 64, 64), box, torch.randn(2, 3, 64, 64), 3)
    model.train()
    with pytest.raises(ValueError, match="search_boxes"):
        model(torch.randn(1, 3, 64, 64), box, torch.randn(1, 3, 64, 64), 1)
    with pytest.raises(ValueError, match=r"search_boxes\[0\] is not finite"):
        model(
            torch.randn(1, 3, 64, 64),
            box,
            torch.randn(1, 3, 64, 64),
            1,
            torch.tensor([[float("nan"), 1, 2, 3]]),
        )
    with pytest.raises(ValueError, match="NaN"):
        model(torch.full((1, 3, 64, 64), float("nan")), box, torch.randn(1, 3, 64, 64), 1, box)


def test_roi_features_of_bf16_maps_are_sampled_at_the_exact_boxes() -> None:
    from siamtfa.config import AdversarialDropoutConfig, RoIConfig
    from siamtfa.model.roi_head import RoIHead

    head = RoIHead(RoIConfig(), AdversarialDropoutConfig(), 8, [4, 8])
    torch.manual_seed(0)
    # maps and template exactly representable in bf16, so both runs see the same values
    feats = [torch.randn(1, 8, 80, 96).bfloat16(), torch.randn(1, 8, 40, 48).bfloat16()]
    template = torch.randn(1, 8, 7, 7).bfloat16()
    # in bf16, 301.3 would be 302 and 201.7 would be 202
    rois = [torch.tensor([[201.7, 150.2, 301.3, 249.9], [10.3, 20.6, 40.2, 70.9]])]
    got = head.fused_features(feats, rois, template, clip_len=1)
    want = head.fused_features([f.float() for f in feats], rois, template.float(), clip_len=1)
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_iou_class_targets_are_the_overlap_of_the_regressed_box() -> None:
    from siamtfa.config import AdversarialDropoutConfig, RoIConfig
    from siamtfa.model.roi_head import RoIHead

    labels = torch.tensor([1, 1, 0])
    rois = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 10], [50, 50, 60, 60]])
    gt = torch.tensor([[0.0, 0, 10, 20], [0, 0, 10, 10], [0, 0, 0, 0]])
    # weights (10, 10, 5, 5): dx = 1 moves the second box by 1 x its width / 10 = 1 pixel
    deltas = torch.tensor([[0.0, 0, 0, 0], [1, 0, 0, 0], [3, 3, 3, 3]])
    binary = RoIHead(RoIConfig(), AdversarialDropoutConfig(), 8, [4])
    assert torch.equal(binary.cls_targets(labels, deltas, rois, gt), labels)
    head = RoIHead(RoIConfig(cls_target="iou"), AdversarialDropoutConfig(), 8, [4])
    got = head.cls_targets(labels, deltas, rois, gt)
    # [0,0,10,10] vs [0,0,10,20]: 100 / 200; [1,0,11,10] vs [0,0,10,10]: 90 / 110
    want = torch.tensor([[0.5, 0.5], [20 / 110, 90 / 110], [1.0, 0.0]])
    torch.testing.assert_close(got, want)


def test_iou_class_target_trains_the_score_towards_the_overlap() -> None:
    from siamtfa.config import AdversarialDropoutConfig, RoIConfig
    from siamtfa.model.roi_head import RoIHead

    torch.manual_seed(0)
    cfg = RoIConfig(fc_dim=16, cls_target="iou", batch_size_per_image=8)
    head = RoIHead(cfg, AdversarialDropoutConfig(enabled=False), 4, [4])
    feats, template = [torch.randn(1, 4, 16, 16)], torch.randn(1, 4, 7, 7)
    target = torch.tensor([8.0, 8.0, 40.0, 40.0])
    proposals = [torch.tensor([[10.0, 10.0, 40.0, 40.0]])]  # IoU 0.879 with the target
    optimizer = torch.optim.SGD(head.parameters(), lr=0.5)
    for _ in range(300):
        loss = head.loss(feats, proposals, template, 1, [target])["rcnn_cls"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        x = head.fused_features(feats, [torch.cat((proposals[0], target[None]))], template, 1)
        logits, deltas = head.predict(x)
        regressed = head.coder.decode(deltas, torch.cat((proposals[0], target[None])))
    # each RoI's score settles at the overlap of its own regressed box, not at 1
    want = box_iou(regressed, target[None])[:, 0]
    torch.testing.assert_close(logits.softmax(-1)[:, 1], want, atol=0.02, rtol=0)
    assert want[0] < 0.9  # the proposal: binary targets would drive its score to 1
