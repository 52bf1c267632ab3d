"""Coverage corpus, the project's own recurrent models (random weights, seeded): keyword spotters (LSTM,
GRU, bidirectional LSTM in PyTorch; LSTM and GRU in Keras) as in examples/lstm_keyword_spotting.py, and an
LSTM autoencoder of the kind used for anomaly detection (encode a window, repeat the code, decode it).
Each builder gives (model, input shape with batch 1)."""
from __future__ import annotations

FRAMES, FEATURES, HIDDEN, KEYWORDS = 20, 10, 16, 4
OWN_INPUT = (1, FRAMES, FEATURES)


def _torch_kws(cell: str, bidirectional: bool = False):
    import torch

    class Spotter(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = getattr(torch.nn, cell)(FEATURES, HIDDEN, batch_first=True, bidirectional=bidirectional)
            self.head = torch.nn.Linear(HIDDEN * (2 if bidirectional else 1), KEYWORDS)

        def forward(self, x):
            y, _ = self.rnn(x)
            return self.head(y[:, -1])

    torch.manual_seed(0)
    return Spotter().eval(), (1, FRAMES, FEATURES)


def _torch_autoencoder():
    import torch

    class LstmAutoencoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = torch.nn.LSTM(FEATURES, HIDDEN, batch_first=True)
            self.decoder = torch.nn.LSTM(HIDDEN, HIDDEN, batch_first=True)
            self.out = torch.nn.Linear(HIDDEN, FEATURES)

        def forward(self, x):
            _, (h, _) = self.encoder(x)
            code = h[-1].unsqueeze(1).repeat(1, FRAMES, 1)
            y, _ = self.decoder(code)
            return self.out(y)

    torch.manual_seed(0)
    return LstmAutoencoder().eval(), (1, FRAMES, FEATURES)


def _keras_kws(cell: str):
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((FRAMES, FEATURES)), getattr(keras.layers, cell)(HIDDEN),
                              keras.layers.Dense(KEYWORDS)])
    return model, (1, FRAMES, FEATURES)


OWN = {
    "own-LSTM-KWS (torch)": lambda: _torch_kws("LSTM"),
    "own-GRU-KWS (torch)": lambda: _torch_kws("GRU"),
    "own-BiLSTM-KWS (torch)": lambda: _torch_kws("LSTM", bidirectional=True),
    "own-LSTM-autoencoder (torch)": _torch_autoencoder,
    "own-LSTM-KWS (keras)": lambda: _keras_kws("LSTM"),
    "own-GRU-KWS (keras)": lambda: _keras_kws("GRU"),
}
