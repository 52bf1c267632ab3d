"""Coverage corpus, the project's own recurrent models (seeded): keyword spotters (LSTM, GRU in PyTorch and
Keras, as in examples/lstm_keyword_spotting.py) briefly trained on digits rows (8 frames of 8 features, 10
classes), as a user ships them; a bidirectional LSTM spotter and an LSTM autoencoder of the kind used for
anomaly detection (encode a window, repeat the code, decode it) with random weights on N(0, 1) windows.
Why trained: random weights score the weights, not what a user exports (random GRU 5-7 dB, random Keras
LSTM 8.5 dB, numbers that moved with the sample count). Trained, the torch GRU still gave 10.2 dB until the
unrolled GRU computed h = (n - z*n) + z*h_prev instead of n + z*(h_prev - n) (frontends/onnx_recurrent.py):
17.2 dB now.
Each builder gives (model, input shape with batch 1, calibration samples or None for N(0, 1))."""
from __future__ import annotations

import numpy as np

FRAMES, FEATURES, HIDDEN, KEYWORDS = 20, 10, 16, 4
OWN_INPUT = (1, FRAMES, FEATURES)
ROWS_INPUT = (1, 8, 8)  # digits rows: 8 frames of 8 features
EPOCHS, CALIB_ROWS = 8, 64
TRAINED = {"own-LSTM-KWS (torch)", "own-GRU-KWS (torch)", "own-LSTM-KWS (keras)", "own-GRU-KWS (keras)"}


def _rows():
    from edgepack.demo import digits_split

    x_train, y_train, _, _ = digits_split()
    return x_train[:, 0], y_train


def _torch_kws(cell: str):
    import torch

    from edgepack.demo import train_classifier

    class Spotter(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = getattr(torch.nn, cell)(ROWS_INPUT[2], HIDDEN, batch_first=True)
            self.head = torch.nn.Linear(HIDDEN, 10)

        def forward(self, x):
            y, _ = self.rnn(x)
            return self.head(y[:, -1])

    x, y = _rows()
    torch.manual_seed(0)
    return train_classifier(Spotter(), x, y, epochs=EPOCHS, seed=0), ROWS_INPUT, x[:CALIB_ROWS]


def _torch_bilstm():
    import torch

    class Spotter(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = torch.nn.LSTM(FEATURES, HIDDEN, batch_first=True, bidirectional=True)
            self.head = torch.nn.Linear(HIDDEN * 2, KEYWORDS)

        def forward(self, x):
            y, _ = self.rnn(x)
            return self.head(y[:, -1])

    torch.manual_seed(0)
    return Spotter().eval(), OWN_INPUT, None


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
    return LstmAutoencoder().eval(), OWN_INPUT, None


def _keras_kws(cell: str):
    import keras

    x, y = _rows()
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input(ROWS_INPUT[1:]), getattr(keras.layers, cell)(HIDDEN),
                              keras.layers.Dense(10)])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=EPOCHS * 3, batch_size=64, verbose=0, shuffle=False)  # Keras' Adam learns slower here
    return model, ROWS_INPUT, np.asarray(x[:CALIB_ROWS])


OWN = {
    "own-LSTM-KWS (torch)": lambda: _torch_kws("LSTM"),
    "own-GRU-KWS (torch)": lambda: _torch_kws("GRU"),
    "own-BiLSTM-KWS (torch)": _torch_bilstm,
    "own-LSTM-autoencoder (torch)": _torch_autoencoder,
    "own-LSTM-KWS (keras)": lambda: _keras_kws("LSTM"),
    "own-GRU-KWS (keras)": lambda: _keras_kws("GRU"),
}
