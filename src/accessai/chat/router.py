"""The OpenAI-compatible API: POST /v1/chat/completions and GET /v1/models.

Authenticated like every other route (``Authorization: Bearer`` with an
access token or API key), so the official openai SDK works with
``base_url`` pointed at AccessAI and the token as ``api_key``. Errors under
/v1 use OpenAI's shape (see ``chat/errors.py``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from accessai.chat.errors import ChatNotConfiguredError
from accessai.chat.pricing import ModelPrice
from accessai.chat.schemas import ChatCompletionRequest, ModelCard, ModelList, ModelPricing
from accessai.chat.service import ChatService
from accessai.chat.streaming import ChatStreamResponse
from accessai.core.security import CurrentUser
from accessai.hardening.ratelimit import ai_rate_limit
from accessai.observability.middleware import current_request_id

router = APIRouter(prefix="/v1", tags=["chat"])


async def get_chat_service(request: Request) -> ChatService:
    service: ChatService | None = getattr(request.app.state, "chat", None)
    if service is None:
        raise ChatNotConfiguredError()
    return service


ChatDep = Annotated[ChatService, Depends(get_chat_service)]


@router.get("/models", response_model=ModelList)
async def list_models(_user: CurrentUser, chat: ChatDep) -> ModelList:
    """The models on offer and their prices in credits per 1,000 tokens."""
    return ModelList(data=[_card(price) for price in chat.prices])


@router.get("/models/{model_id}", response_model=ModelCard)
async def get_model(model_id: str, _user: CurrentUser, chat: ChatDep) -> ModelCard:
    return _card(chat.prices.get(model_id))


def _card(price: ModelPrice) -> ModelCard:
    return ModelCard(
        id=price.model,
        pricing=ModelPricing(
            prompt_credits_per_1k=price.prompt_credits_per_1k,
            completion_credits_per_1k=price.completion_credits_per_1k,
            max_output_tokens=price.max_output_tokens,
        ),
    )


# The per-user limit (RATE_LIMIT_AI) is a route dependency: FastAPI runs it
# before the body, so a refused request holds nothing.
@router.post(
    "/chat/completions",
    response_model=None,
    dependencies=[Depends(ai_rate_limit)],
    responses={
        200: {
            "description": "A chat.completion object, or with stream=true Server-Sent "
            "Events of chat.completion.chunk objects ending with data: [DONE]."
        },
        402: {"description": "The balance cannot cover the most this request can cost."},
        429: {"description": "Over RATE_LIMIT_AI for this user (nothing held); see Retry-After."},
        503: {"description": "No provider is configured (OPENAI_API_KEY)."},
    },
)
async def create_chat_completion(
    body: ChatCompletionRequest,
    user: CurrentUser,
    chat: ChatDep,
    request: Request,
) -> Response:
    # The provider call runs outside any transaction; each billing step is its own.
    plan = await chat.plan(body)
    request_id = current_request_id(request.scope)
    if body.stream:
        stream = await chat.start_stream(user.id, plan, request_id)
        return ChatStreamResponse(stream)
    return JSONResponse(await chat.complete(user.id, plan, request_id))
