#!/usr/bin/python3
# Generates tests/golden/residual.json: residual blocks, LayerNorm and BatchNorm1d computed by PyTorch itself.
# Run with Debian's interpreter (torch 1.13 is installed there), from anywhere:
#   /usr/bin/python3 tests/golden/residual.py
# Everything in float64 on the CPU with 1 thread; the seeds are fixed, so a rerun writes the same file.
# Do not edit residual.json by hand: change this script and rerun it.
import copy
import json
import os
import re
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

torch.set_num_threads(1)
torch.set_default_dtype(torch.float64)

SEED_RESMLP = 20250615
SEED_NESTED = 20250616
SEED_EDGE = 20250617
SEED_BATCHNORM = 20250618
ADAM = dict(lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False)
STEPS = 5
RELU_MARGIN = 1e-3


class ReluTooCloseToZero(Exception):
    pass


class Residual(nn.Module):
    """y = x + body(x), or proj(x) + body(x) when the block changes the width (proj: nn.Linear with bias)."""

    def __init__(self, body, proj=None):
        super().__init__()
        self.body = body
        if proj is not None:
            self.proj = proj

    def forward(self, x):
        return (self.proj(x) if hasattr(self, "proj") else x) + self.body(x)


def tensor(t):
    t = t.detach()
    if t.dtype == torch.int64:
        return {"shape": list(t.shape), "data": [int(v) for v in t.reshape(-1).tolist()]}
    assert t.dtype == torch.float64, t.dtype
    # float.__repr__ (what json writes) is the shortest text that parses back to the same double.
    return {"shape": list(t.shape), "data": [float(v) for v in t.reshape(-1).tolist()]}


def named(model):
    return {k: tensor(v) for k, v in model.state_dict().items()}


def perturb_layernorms(model, gen_scale=(0.25, 0.1)):
    # torch initializes LayerNorm weight to 1 and bias to 0; perturb both so the test exercises them.
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.copy_(1 + gen_scale[0] * torch.randn(m.weight.shape))
                m.bias.copy_(gen_scale[1] * torch.randn(m.bias.shape))


def perturb_batchnorms(model, gen_scale=(0.25, 0.1)):
    # torch initializes BatchNorm1d weight to 1 and bias to 0 (running_mean 0, running_var 1); perturb the parameters only.
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm1d):
                m.weight.copy_(1 + gen_scale[0] * torch.randn(m.weight.shape))
                m.bias.copy_(gen_scale[1] * torch.randn(m.bias.shape))


def relu_inputs(model, x):
    """Every input of every nn.ReLU in a forward pass of x (hooks), flattened."""
    seen = []
    hooks = [m.register_forward_hook(lambda mod, inp, out: seen.append(inp[0].detach().reshape(-1)))
             for m in model.modules() if isinstance(m, nn.ReLU)]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return torch.cat(seen) if seen else torch.empty(0)


def loss_fn(kind, out, y):
    if kind == "cross_entropy":
        return F.cross_entropy(out, y, reduction="mean")
    return F.mse_loss(out, y, reduction="mean")


def record(model, x, y, kind, y_name, train=True):
    """Forward, loss, grads and x_grad of the current parameters, then (train) 5 Adam steps on the same batch."""
    rec = {
        "state_dict_keys": list(model.state_dict().keys()),
        "params": named(model),
        "x": tensor(x),
        y_name: tensor(y),
    }
    # Every parameter is a leaf with requires_grad; the state_dict holds nothing else (no buffers).
    assert [k for k, _ in model.named_parameters()] == rec["state_dict_keys"]
    xg = x.clone().requires_grad_(True)
    model.zero_grad(set_to_none=True)
    out = model(xg)
    loss = loss_fn(kind, out, y)
    loss.backward()
    rec["output"] = tensor(out)
    rec["loss"] = float(loss.item())
    rec["grads"] = {k: tensor(p.grad) for k, p in model.named_parameters()}
    rec["x_grad"] = tensor(xg.grad)
    if train:
        start = {k: v.clone() for k, v in model.state_dict().items()}
        opt = torch.optim.Adam(model.parameters(), **ADAM)
        losses = []
        relu_min = relu_inputs(model, x).abs().min().item() if any(isinstance(m, nn.ReLU) for m in model.modules()) else None
        for _ in range(STEPS):
            opt.zero_grad()
            if relu_min is not None:
                relu_min = min(relu_min, relu_inputs(model, x).abs().min().item())
            l = loss_fn(kind, model(x), y)
            l.backward()
            opt.step()
            losses.append(float(l.item()))
        assert losses[0] == rec["loss"]
        rec["train"] = {"losses": losses, "params_after_last_step": named(model)}
        if relu_min is not None:
            if not relu_min > RELU_MARGIN:
                raise ReluTooCloseToZero(relu_min)
            rec["relu_min_abs_pre_activation"] = relu_min
        model.load_state_dict(start, strict=True)
    return rec


def resmlp():
    torch.manual_seed(SEED_RESMLP)
    model = nn.Sequential(
        nn.Linear(6, 8), nn.Tanh(),
        Residual(nn.Sequential(nn.Linear(8, 8), nn.GELU(), nn.LayerNorm(8, eps=1e-5))),
        Residual(nn.Sequential(nn.Linear(8, 5), nn.SiLU()), proj=nn.Linear(8, 5)),
        nn.LayerNorm(5, eps=1e-5),
        nn.Linear(5, 3))
    perturb_layernorms(model)
    x = torch.randn(5, 6)
    labels = torch.tensor([0, 2, 1, 2, 0], dtype=torch.int64)
    rec = {"description": (
        f"torch.manual_seed({SEED_RESMLP}); model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), "
        "Residual(body=nn.Sequential(nn.Linear(8, 8), nn.GELU(), nn.LayerNorm(8, eps=1e-05))), "
        "Residual(body=nn.Sequential(nn.Linear(8, 5), nn.SiLU()), proj=nn.Linear(8, 5)), "
        "nn.LayerNorm(5, eps=1e-05), nn.Linear(5, 3)) (default torch init, in construction order; GELU exact); then every LayerNorm, "
        "in module order: weight = 1 + 0.25 * torch.randn(n), bias = 0.1 * torch.randn(n); x = torch.randn(5, 6); "
        "labels fixed [0, 2, 1, 2, 0]. loss = F.cross_entropy(model(x), labels, reduction='mean'); loss.backward(). "
        "'output' = model(x) (logits [5, 3]); 'grads' = d(loss)/d(parameter) by state_dict name; 'x_grad' = d(loss)/d(x). "
        "Training: from 'params', opt = torch.optim.Adam(model.parameters(), lr=0.01, betas=(0.9, 0.999), eps=1e-08, "
        "weight_decay=0, amsgrad=False); 5 steps of opt.zero_grad(); loss = F.cross_entropy(model(x), labels); loss.backward(); opt.step(). "
        "'train.losses'[t-1] is the loss computed in step t (losses[0] == 'loss'); 'train.params_after_last_step' after step 5.")}
    rec.update(record(model, x, labels, "cross_entropy", "labels"))
    return rec


def nested():
    seed = SEED_NESTED
    while True:
        torch.manual_seed(seed)
        model = nn.Sequential(
            Residual(nn.Sequential(
                nn.Linear(4, 6), nn.Tanh(),
                Residual(nn.Sequential(nn.Linear(6, 6), nn.ReLU())),
                nn.LayerNorm(6, eps=1e-5)), proj=nn.Linear(4, 6)),
            nn.Linear(6, 2))
        perturb_layernorms(model)
        x = torch.randn(5, 4)
        target = torch.randn(5, 2)
        try:
            rec = record(model, x, target, "mse", "targets")
            break
        except ReluTooCloseToZero:
            # A ReLU input within RELU_MARGIN of 0 somewhere in the 5 steps: take the next seed.
            print(f"seed {seed}: a ReLU pre-activation within {RELU_MARGIN} of 0; trying {seed + 1}", file=sys.stderr)
            seed += 1
    desc = (
        f"torch.manual_seed({seed}); model = nn.Sequential(Residual(body=nn.Sequential(nn.Linear(4, 6), nn.Tanh(), "
        "Residual(body=nn.Sequential(nn.Linear(6, 6), nn.ReLU())), nn.LayerNorm(6, eps=1e-05)), proj=nn.Linear(4, 6)), "
        "nn.Linear(6, 2)) (default torch init, in construction order: the body's modules, then proj); then the LayerNorm: "
        "weight = 1 + 0.25 * torch.randn(6), bias = 0.1 * torch.randn(6); x = torch.randn(5, 4); targets = torch.randn(5, 2). "
        "loss = F.mse_loss(model(x), targets, reduction='mean') (mean over all 10 elements); loss.backward(). "
        "'output', 'grads', 'x_grad' and the 5-step Adam record as for 'resmlp' (mse_loss instead of cross_entropy). "
        f"The seed is the first from {SEED_NESTED} up whose every ReLU input, at the initial parameters and in each of the 5 "
        f"training steps' forward passes, is at least {RELU_MARGIN} from 0 ('relu_min_abs_pre_activation' is the smallest |input|); "
        "no bias was nudged.")
    out = {"description": desc}
    out.update(rec)
    return out


def layernorm_edge():
    torch.manual_seed(SEED_EDGE)
    model = nn.Sequential(nn.LayerNorm(6, eps=1e-5), nn.Linear(6, 3))
    perturb_layernorms(model)
    normal = torch.randn(2, 6)
    constant = torch.full((1, 6), 2.5)
    # 1e4 + k/64, k integers in [-32, 32] summing to 0: exact in float32 too, and so is their mean 1e4 (a float model sees
    # the same input and mean; its E[x^2] - mean^2 would lose everything).
    while True:
        k = torch.randint(-32, 33, (5,))
        last = -int(k.sum())
        if abs(last) <= 32:
            break
    large = 1e4 + torch.cat([k, torch.tensor([last])]).to(torch.float64).reshape(1, 6) / 64
    assert large.mean().item() == 1e4
    x = torch.cat([normal[:1], constant, large, normal[1:]])
    target = torch.randn(4, 3)
    rec = {"description": (
        f"LayerNorm edge cases. torch.manual_seed({SEED_EDGE}); model = nn.Sequential(nn.LayerNorm(6, eps=1e-05), nn.Linear(6, 3)) "
        "(default init); LayerNorm weight = 1 + 0.25 * torch.randn(6), bias = 0.1 * torch.randn(6); normal = torch.randn(2, 6); "
        "x = rows [normal[0], a constant row (all 2.5: variance 0, so x_hat = 0, y = bias and rstd = 1/sqrt(eps)), "
        "1e4 + k / 64 (large mean 1e4, small spread; k = torch.randint(-32, 33, (5,)) drawn until -k.sum() is in [-32, 32], "
        "then k.sum() appended negated, so the mean is exactly 1e4; every value exact in float32), normal[1]]; "
        "targets = torch.randn(4, 3); loss = F.mse_loss(model(x), targets, reduction='mean'); loss.backward(). "
        "'output', 'loss', 'grads', 'x_grad' as for 'resmlp'; 'layernorm_output' = model[0](x). No training record. "
        "'layernorm_output_exact': the same LayerNorm computed from the same doubles in 50-digit decimal arithmetic (two-pass "
        "mean and biased variance, (x - mean) * rstd * weight + bias), rounded once to double; "
        "'layernorm_output_torch_max_abs_error_per_row' = max |layernorm_output - layernorm_output_exact| per row. On the "
        "large-mean row torch's own rounding is ~4e-12 absolute (its values there are not correctly rounded; a (x - mean) * rstd "
        "form is accurate to an ulp), and it reaches 'output' and the grads of '1.weight': compare that row with an "
        "absolute tolerance of at least 1e-11.")}
    rec.update(record(model, x, target, "mse", "targets", train=False))
    with torch.no_grad():
        rec["layernorm_output"] = tensor(model[0](x))
    # The same LayerNorm in 50-digit decimal arithmetic from the same doubles, rounded once to double: an independent
    # check of torch's values, and of how much its own rounding contributes on the large-mean row.
    exact = layernorm_exact(x, model[0].weight.detach(), model[0].bias.detach(), 1e-5)
    rec["layernorm_output_exact"] = tensor(exact)
    with torch.no_grad():
        err = [float((model[0](x) - exact)[r].abs().max()) for r in range(x.shape[0])]
    assert max(err) < 1e-10, err
    rec["layernorm_output_torch_max_abs_error_per_row"] = err
    return rec


def record_batchnorm(model, x, y, kind, y_name):
    """As record, for a model with BatchNorm1d (state_dict = parameters and buffers): the one-pass record from a copy of the
    model in train mode (torch's train-mode forward moves the copy's running statistics, not the model's), then 5 Adam steps
    from the fresh buffers, the buffers after them and the eval-mode output."""
    bn = [m for m in model.modules() if isinstance(m, nn.BatchNorm1d)]
    assert bn and all(int(m.num_batches_tracked) == 0 and bool((m.running_mean == 0).all()) and bool((m.running_var == 1).all())
                      for m in bn), "fresh buffers"
    params = dict(model.named_parameters())
    buffers = dict(model.named_buffers())
    rec = {
        "state_dict_keys": list(model.state_dict().keys()),
        "params": {k: tensor(p) for k, p in params.items()},
        "buffers": {k: tensor(b) for k, b in buffers.items()},
        "x": tensor(x),
        y_name: tensor(y),
    }
    # The state_dict holds exactly the parameters and the buffers, each module's parameters before its buffers.
    assert sorted(rec["state_dict_keys"]) == sorted(list(params) + list(buffers))
    model.eval()
    with torch.no_grad():
        rec["eval_output_fresh"] = tensor(model(x))
    once = copy.deepcopy(model).train()
    xg = x.clone().requires_grad_(True)
    once.zero_grad(set_to_none=True)
    out = once(xg)
    loss = loss_fn(kind, out, y)
    loss.backward()
    rec["output"] = tensor(out)
    rec["loss"] = float(loss.item())
    rec["grads"] = {k: tensor(p.grad) for k, p in once.named_parameters()}
    rec["x_grad"] = tensor(xg.grad)
    assert all(int(m.num_batches_tracked) == 0 for m in bn), "the copy's forward left the model's buffers alone"
    start = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    opt = torch.optim.Adam(model.parameters(), **ADAM)
    losses = []
    for _ in range(STEPS):
        opt.zero_grad()
        l = loss_fn(kind, model(x), y)
        l.backward()
        opt.step()
        losses.append(float(l.item()))
    assert losses[0] == rec["loss"]
    model.eval()
    with torch.no_grad():
        eval_out = model(x)
    rec["train"] = {
        "losses": losses,
        "params_after_last_step": {k: tensor(p) for k, p in model.named_parameters()},
        "buffers_after_last_step": {k: tensor(b) for k, b in model.named_buffers()},
        "eval_output": tensor(eval_out),
    }
    assert all(int(m.num_batches_tracked) == STEPS for m in bn)
    model.load_state_dict(start, strict=True)
    model.train()
    return rec


def batchnorm():
    torch.manual_seed(SEED_BATCHNORM)
    model = nn.Sequential(
        nn.BatchNorm1d(5, eps=1e-5, momentum=0.1),
        nn.Linear(5, 8), nn.Tanh(),
        nn.BatchNorm1d(8, eps=1e-3, momentum=0.1),
        Residual(nn.Sequential(nn.Linear(8, 6), nn.GELU(), nn.BatchNorm1d(6, eps=1e-5, momentum=0.3)), proj=nn.Linear(8, 6)),
        nn.Linear(6, 3))
    perturb_batchnorms(model)
    # Off-centre inputs of unequal spread, so the running statistics move visibly away from 0 and 1.
    x = torch.randn(6, 5) * torch.tensor([0.5, 1.0, 2.0, 3.0, 1.5]) + torch.tensor([1.0, -2.0, 0.5, 0.0, 3.0])
    labels = torch.tensor([0, 2, 1, 1, 0, 2], dtype=torch.int64)
    rec = {"description": (
        f"torch.manual_seed({SEED_BATCHNORM}); model = nn.Sequential(nn.BatchNorm1d(5, eps=1e-05, momentum=0.1), nn.Linear(5, 8), "
        "nn.Tanh(), nn.BatchNorm1d(8, eps=0.001, momentum=0.1), Residual(body=nn.Sequential(nn.Linear(8, 6), nn.GELU(), "
        "nn.BatchNorm1d(6, eps=1e-05, momentum=0.3)), proj=nn.Linear(8, 6)), nn.Linear(6, 3)) (default torch init, in construction "
        "order; GELU exact; affine=True, track_running_stats=True); then every BatchNorm1d, in module order: weight = 1 + 0.25 * "
        "torch.randn(n), bias = 0.1 * torch.randn(n) (the buffers stay fresh: running_mean 0, running_var 1, num_batches_tracked 0); "
        "x = torch.randn(6, 5) * [0.5, 1, 2, 3, 1.5] + [1, -2, 0.5, 0, 3] (per column); labels fixed [0, 2, 1, 1, 0, 2]. "
        "'state_dict_keys': model.state_dict() order (parameters and buffers; each module's weight, bias, running_mean, "
        "running_var, num_batches_tracked); 'params' by named_parameters, 'buffers' (fresh) by named_buffers (num_batches_tracked "
        "is int64, shape []). 'eval_output_fresh' = model.eval()(x) with the fresh buffers. One pass in train mode (batch statistics, "
        "biased variance), on a copy.deepcopy of the model so that the model's buffers stay fresh: loss = F.cross_entropy(copy(x), "
        "labels, reduction='mean'); loss.backward(); 'output' = copy(x) (train mode), 'grads' = d(loss)/d(parameter), 'x_grad' = "
        "d(loss)/d(x). Training from 'params' and the fresh buffers, in train mode: opt = torch.optim.Adam(model.parameters(), "
        "lr=0.01, betas=(0.9, 0.999), eps=1e-08, weight_decay=0, amsgrad=False); 5 steps of opt.zero_grad(); loss = "
        "F.cross_entropy(model(x), labels); loss.backward(); opt.step() (each forward also updates running_mean = (1 - momentum) * "
        "running_mean + momentum * batch mean, running_var likewise with the unbiased batch variance, num_batches_tracked += 1). "
        "'train.losses', 'train.params_after_last_step' as for 'resmlp'; 'train.buffers_after_last_step' after step 5 "
        "(num_batches_tracked 5); 'train.eval_output' = model.eval()(x) after step 5 (running statistics).")}
    rec.update(record_batchnorm(model, x, labels, "cross_entropy", "labels"))
    return rec


def layernorm_exact(x, weight, bias, eps):
    import decimal
    ctx = decimal.Context(prec=50)
    D = decimal.Decimal
    out = torch.empty_like(x)
    n = x.shape[1]
    for r in range(x.shape[0]):
        row = [D(float(v)) for v in x[r]]
        mean = ctx.divide(sum(row, D(0)), D(n))
        var = ctx.divide(sum((ctx.multiply(v - mean, v - mean) for v in row), D(0)), D(n))
        rstd = ctx.divide(D(1), ctx.sqrt(var + D(eps)))
        for i, v in enumerate(row):
            out[r, i] = float(ctx.add(ctx.multiply(ctx.multiply(ctx.subtract(v, mean), rstd), D(float(weight[i]))), D(float(bias[i]))))
    return out


def main():
    doc = {
        "description": (
            "Residual blocks, LayerNorm and BatchNorm1d, computed by PyTorch itself (tests/golden/residual.py). Residual is the module "
            "class Residual(nn.Module): __init__(self, body, proj=None) sets self.body = body and, when given, self.proj = proj; "
            "forward(x) = (self.proj(x) if hasattr(self, 'proj') else x) + self.body(x). State_dict names follow that module "
            "tree: 'k.body.i.weight', 'k.proj.bias', LayerNorm 'k.weight'/'k.bias' (1-D). Records: 'resmlp' (cross-entropy), "
            "'nested' (a residual block inside another, with a projection; MSE), 'layernorm_edge' (a constant row and a row of "
            "large mean through LayerNorm, then Linear), 'batchnorm' (BatchNorm1d on the input, after Linear+Tanh and inside a "
            "residual body; cross-entropy; state_dict with buffers 'k.running_mean', 'k.running_var', 'k.num_batches_tracked'). "
            "Each record: 'description', 'state_dict_keys' (in order), 'params', 'x', 'labels' or 'targets', 'output', 'loss', "
            "'grads', 'x_grad', and (not layernorm_edge) 'train'; 'batchnorm' adds the buffers, eval-mode outputs and the buffers "
            "after training. Conventions as "
            "the other golden files: tensors {\"shape\", \"data\"} flat row-major; float64; nn.Linear weight [out, in]; "
            "reduction 'mean'."),
        "generator": {
            "torch": torch.__version__,
            "python": sys.version.split()[0],
            "dtype": "float64",
            "threads": torch.get_num_threads(),
            "seeds": {"resmlp": SEED_RESMLP, "nested_first_tried": SEED_NESTED, "layernorm_edge": SEED_EDGE,
                      "batchnorm": SEED_BATCHNORM},
        },
        "resmlp": resmlp(),
        "nested": nested(),
        "layernorm_edge": layernorm_edge(),
        "batchnorm": batchnorm(),
    }
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "residual.json")
    text = json.dumps(doc, indent=2, allow_nan=False)
    # Lists of scalars on one line, as the other golden files.
    text = re.sub(r"\[\s+([^\[\]{}]*?)\s+\]", lambda m: "[" + ", ".join(v.strip() for v in m.group(1).split(",")) + "]", text)
    assert json.loads(text) == doc
    with open(path, "w") as f:
        f.write(text + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
