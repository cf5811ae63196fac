"""From-scratch decoder trained as a batched ENSEMBLE: E independent models in one set of tensors.

Every parameter is stacked along a leading model axis [E, ...] and every matmul is a batched
`bmm` over that axis, so E small models cost about as much Python / dispatch overhead as one:
on a CPU the cores do arithmetic instead of interpreting. The models share nothing: each has
its own initialisation (its own seed), its own data stream and its own Adam state (Adam is
elementwise, so one optimiser over stacked tensors is E independent optimisers), and the
training loss is the SUM of the per-model mean losses, so no gradient mixes two models.

Architecture (GPT-2 style, pre-LayerNorm): token + learned absolute position embeddings,
`layers` blocks of causal multi-head self-attention (`heads`) and a GELU MLP (4x width),
final LayerNorm, an untied output layer. Greedy decoding uses a key/value cache.

Vocabulary (character level, fit for the alignment task): <pad>, the 25 input symbols A..Y,
the 26 output letters a..z, ':' (end of input) and '\\n' (end of example): 54 tokens. An
example "ACB: rijjpr" is the 11 tokens A C B : r i j j p r \\n.
"""
import math

import torch
import torch.nn.functional as F

PAD = 0
SYMBOLS = "ABCDEFGHIJKLMNOPQRSTUVWXY"
LETTERS = "abcdefghijklmnopqrstuvwxyz"
SEP, EOL = 52, 53
VOCAB = 54
SYM0, LET0 = 1, 26          # token id of symbol 0 ('A') and of letter 0 ('a')


def decode_letters(ids):
    """Token ids -> text ('?' for a token that is not a letter)."""
    return "".join(LETTERS[i - LET0] if LET0 <= i < LET0 + 26 else "?" for i in ids)


class Ensemble(torch.nn.Module):
    """E independent decoders with identical shapes; parameters [E, ...]."""

    def __init__(self, seeds, layers=2, width=64, heads=2, max_len=128, vocab=VOCAB):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by heads {heads}")
        self.E, self.L, self.W, self.H, self.T, self.V = len(seeds), layers, width, heads, max_len, vocab
        W, std = width, 0.02
        shapes = {"tok": (vocab, W), "pos": (max_len, W), "out": (W, vocab), "lnf_g": (W,), "lnf_b": (W,)}
        for i in range(layers):
            shapes.update({f"{i}.ln1_g": (W,), f"{i}.ln1_b": (W,), f"{i}.qkv": (W, 3 * W), f"{i}.qkv_b": (3 * W,),
                           f"{i}.o": (W, W), f"{i}.o_b": (W,), f"{i}.ln2_g": (W,), f"{i}.ln2_b": (W,),
                           f"{i}.fc": (W, 4 * W), f"{i}.fc_b": (4 * W,), f"{i}.proj": (4 * W, W),
                           f"{i}.proj_b": (W,)})
        per_model = []
        for seed in seeds:      # each model from its own generator: independent of the others in the group
            g = torch.Generator().manual_seed(int(seed))
            p = {}
            for name, shape in shapes.items():
                if name.endswith("_g"):
                    p[name] = torch.ones(shape)
                elif name.endswith("_b"):
                    p[name] = torch.zeros(shape)
                else:
                    s = std / math.sqrt(2 * layers) if name.endswith((".o", ".proj")) else std
                    p[name] = torch.randn(shape, generator=g) * s
            per_model.append(p)
        self.names = list(shapes)
        self.params = torch.nn.ParameterDict(
            {n.replace(".", "_"): torch.nn.Parameter(torch.stack([p[n] for p in per_model])) for n in shapes})

    def p(self, name):
        return self.params[name.replace(".", "_")]

    def n_params(self):
        """Parameters of ONE model."""
        return sum(v[0].numel() for v in self.params.values())

    def flops_per_token(self, T):
        """Forward matmul FLOPs of one model per token at sequence length T, all positions computed
        (x3 for a training step; with the last-block shortcut of `loss` fewer are executed)."""
        W = self.W
        return 2 * (self.L * (12 * W * W + 2 * T * W) + W * self.V)

    def train_flops(self, T, n_target):
        """Matmul FLOPs of one training step per sequence (forward + backward = 3x forward) as `loss`
        executes them: all blocks but the last over T-1 positions, the last block's queries, MLP
        and the output layer only at the n_target label positions."""
        W, T1 = self.W, T - 1
        full = (self.L - 1) * T1 * (12 * W * W + 2 * T1 * W)
        last = T1 * 2 * W * W + n_target * (10 * W * W + 2 * T1 * W) + n_target * W * self.V
        return 3 * 2 * (full + last)

    @staticmethod
    def _ln(x, g, b):
        E = x.shape[0]
        y = F.layer_norm(x, x.shape[-1:])
        return y * g.view(E, *([1] * (x.dim() - 2)), -1) + b.view(E, *([1] * (x.dim() - 2)), -1)

    @staticmethod
    def _lin(x, w, b):
        """x [E, N, i] @ w [E, i, o] + b [E, o]."""
        return torch.baddbmm(b[:, None, :], x, w)

    def forward(self, tokens, start=0, cache=None, positions=None):
        """tokens [E, B, T] -> logits [E, B, T, V] (or only at `positions` [T'] along T).
        With `cache` (a list filled on the first call), attention also reads the cached keys
        and values of earlier positions: `start` is the position of tokens[..., 0]."""
        E, B, T = tokens.shape
        H, W = self.H, self.W
        dh = W // H
        ar = torch.arange(E)[:, None, None]
        x = self.p("tok")[ar, tokens] + self.p("pos")[:, start:start + T][:, None]
        for i in range(self.L):
            if positions is not None and i == self.L - 1 and cache is None:
                x = self._last_block(x, positions)      # only the outputs at `positions` are needed
                break
            h = self._ln(x, self.p(f"{i}.ln1_g"), self.p(f"{i}.ln1_b")).reshape(E, B * T, W)
            qkv = self._lin(h, self.p(f"{i}.qkv"), self.p(f"{i}.qkv_b")).view(E * B, T, 3, H, dh)
            q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)          # [E*B, H, T, dh]
            if cache is not None:
                if len(cache) > i:                   # a preallocated buffer [kb, vb, filled length]
                    kb, vb, n = cache[i]
                    kb[:, :, n:n + T], vb[:, :, n:n + T] = k, v
                    cache[i][2] = n + T
                    k, v = kb[:, :, :n + T], vb[:, :, :n + T]
                else:
                    cache.append((k, v))
            causal = T > 1
            if causal and k.shape[2] != T:
                raise ValueError("multi-token steps with a non-empty cache are not supported")
            a = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
            a = a.permute(0, 2, 1, 3).reshape(E, B * T, W)
            x = x + self._lin(a, self.p(f"{i}.o"), self.p(f"{i}.o_b")).view(E, B, T, W)
            h = self._ln(x, self.p(f"{i}.ln2_g"), self.p(f"{i}.ln2_b")).reshape(E, B * T, W)
            h = F.gelu(self._lin(h, self.p(f"{i}.fc"), self.p(f"{i}.fc_b")))
            x = x + self._lin(h, self.p(f"{i}.proj"), self.p(f"{i}.proj_b")).view(E, B, T, W)
        if positions is not None and x.shape[2] != len(positions):
            x = x[:, :, positions]
        x = self._ln(x, self.p("lnf_g"), self.p("lnf_b"))
        Tn = x.shape[2]
        return torch.bmm(x.reshape(E, B * Tn, W), self.p("out")).view(E, B, Tn, self.V)

    def _last_block(self, x, positions):
        """The last block evaluated only at `positions` (keys/values still over all tokens): in
        training only the label positions feed the loss, which saves most of the last block."""
        E, B, T, W = x.shape
        H, dh, i, Tq = self.H, W // self.H, self.L - 1, len(positions)
        h = self._ln(x, self.p(f"{i}.ln1_g"), self.p(f"{i}.ln1_b")).reshape(E, B * T, W)
        w, b = self.p(f"{i}.qkv"), self.p(f"{i}.qkv_b")
        kv = self._lin(h, w[:, :, W:], b[:, W:]).view(E * B, T, 2, H, dh)
        k, v = kv.permute(2, 0, 3, 1, 4).unbind(0)
        hq = h.view(E, B, T, W)[:, :, positions].reshape(E, B * Tq, W)
        q = self._lin(hq, w[:, :, :W], b[:, :W]).view(E * B, Tq, H, dh).transpose(1, 2)
        mask = torch.arange(T)[None, :] <= positions[:, None]          # causal, for the chosen queries
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        a = a.permute(0, 2, 1, 3).reshape(E, B * Tq, W)
        x = x[:, :, positions] + self._lin(a, self.p(f"{i}.o"), self.p(f"{i}.o_b")).view(E, B, Tq, W)
        h = self._ln(x, self.p(f"{i}.ln2_g"), self.p(f"{i}.ln2_b")).reshape(E, B * Tq, W)
        h = F.gelu(self._lin(h, self.p(f"{i}.fc"), self.p(f"{i}.fc_b")))
        return x + self._lin(h, self.p(f"{i}.proj"), self.p(f"{i}.proj_b")).view(E, B, Tq, W)

    def loss(self, tokens, n_target):
        """Per-model mean cross-entropy on the last `n_target` tokens of each sequence (the label
        y; prompt and context masked). tokens [E, B, T] -> [E]."""
        T = tokens.shape[-1]
        pos = torch.arange(T - 1 - n_target, T - 1)
        logits = self(tokens[..., :-1], positions=pos)               # predicts tokens[..., T-n:]
        tgt = tokens[..., T - n_target:]
        ce = F.cross_entropy(logits.reshape(-1, self.V), tgt.reshape(-1), reduction="none")
        return ce.view(self.E, -1).mean(1)

    @torch.no_grad()
    def generate(self, prompts, n_new, chunk=None, allowed=None):
        """Greedy continuation of n_new tokens. prompts [E, N, T] (or [N, T], shared by all
        models) -> [E, N, n_new]. `allowed` = (lo, hi): the argmax is taken over token ids lo..hi-1
        only (the answer of an alignment prompt is letters). Keys/values of the prompt are cached
        in preallocated buffers, so each new token costs one position."""
        if prompts.dim() == 2:
            prompts = prompts[None].expand(self.E, -1, -1)
        chunk = chunk or max(16, 4096 // self.E)
        outs = []
        for s in range(0, prompts.shape[1], chunk):
            p = prompts[:, s:s + chunk].contiguous()
            cache = []
            logits = self(p, cache=cache)[:, :, -1]
            T = p.shape[-1]
            buf = []
            for k, v in cache:                      # room for the new tokens
                kb = k.new_empty(k.shape[0], k.shape[1], T + n_new, k.shape[3])
                vb = torch.empty_like(kb)
                kb[:, :, :T], vb[:, :, :T] = k, v
                buf.append([kb, vb, T])
            out = []
            for j in range(n_new):
                lg = logits if allowed is None else logits[..., allowed[0]:allowed[1]]
                nxt = lg.argmax(-1) + (0 if allowed is None else allowed[0])
                out.append(nxt)
                if j + 1 < n_new:
                    logits = self(nxt[..., None], start=T + j, cache=buf)[:, :, -1]
            outs.append(torch.stack(out, -1))
        return torch.cat(outs, 1)


def make_optimizer(model, lr):
    return torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.98), eps=1e-8)


def lr_at(step, lr, warmup):
    """Linear warm-up, then constant (no decay: transience must not be an artefact of a schedule)."""
    return lr * min(1.0, (step + 1) / max(warmup, 1))


def train_step(model, opt, tokens, n_target, lr):
    for g in opt.param_groups:
        g["lr"] = lr
    losses = model.loss(tokens, n_target)
    opt.zero_grad(set_to_none=True)
    losses.sum().backward()          # independent models: the sum keeps their gradients apart
    opt.step()
    return losses.detach()
