# Build the wheel, then install only the wheel: the image runs exactly what `pip install`
# gives a user, with the shipped model, Lua scripts and console files as package data.
FROM python:3.11-slim AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY service ./service
COPY detectors ./detectors
COPY traffic ./traffic
COPY models ./models
RUN pip wheel --no-cache-dir --no-deps -w /dist .

FROM python:3.11-slim
COPY --from=wheel /dist /dist
RUN pip install --no-cache-dir /dist/distillguard-*.whl && rm -rf /dist
# The working directory (traffic files, recordings); no source tree in the image.
WORKDIR /var/lib/distillguard
EXPOSE 8000
ENTRYPOINT ["distillguard"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
